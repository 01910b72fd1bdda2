"""A full disk: the control plane's home on a small tmpfs, filled up for real.

Issue 10, item 3. A pod printing without end has its log capped; a full disk gets one clear
line (HTTP 507, exit 6), no busy loop, no misrecorded pod and no index run twice; memory
follows only what was committed, and everything resumes once space returns. Mounting a
tmpfs needs root (CI runs these as root); elsewhere they skip, saying so.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.control.conftest import ControlPlane

SIZE = "4m"


@pytest.fixture
def small_home(tmp_path: Path) -> Iterator[Path]:
    """A home on a tmpfs of its own, unmounted (lazily, pods may hold it) afterwards."""
    home = tmp_path / "home"
    home.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={SIZE},mode=0700",
                              "tmpfs", str(home)], capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {mounted.stderr.strip()}")
    try:
        yield home
    finally:
        subprocess.run(["umount", "-l", str(home)], check=False)


def fill(where: Path) -> Path:
    """Fill the filesystem holding ``where`` to its last byte; the file that did it."""
    filler = where / "filler"
    with open(filler, "ab") as f:
        chunk = b"\0" * 65536
        with contextlib.suppress(OSError):
            while True:
                f.write(chunk)
                f.flush()
        # the last, partial chunk
        size = 4096
        while size:
            try:
                os.write(f.fileno(), b"\0" * size)
            except OSError:
                size //= 2
    return filler


def one_line_error(proc: subprocess.CompletedProcess[str]) -> str:
    assert proc.returncode == 6, (proc.returncode, proc.stdout, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "no space left" in lines[0], lines[0]
    assert "Traceback" not in proc.stderr + proc.stdout
    return lines[0]


def test_up_on_a_full_disk_is_one_line_and_leaves_no_temporary_file(
        small_home: Path) -> None:
    cp = ControlPlane(small_home)
    filler = fill(small_home)
    one_line_error(cp.run("up", "--gpus", "1", check=False))
    assert not list(small_home.rglob("*.tmp"))
    filler.unlink()
    cp.run("up", "--gpus", "1")
    try:
        cp.run("down")
        # a home that exists already, full: the control plane itself cannot start
        filler = fill(small_home)
        one_line_error(cp.run("up", check=False))
        assert not list(small_home.rglob("*.tmp"))
        filler.unlink()
        cp.run("up")
        assert cp.json("project", "list") == []
    finally:
        cp.stop()
