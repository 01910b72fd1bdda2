"""wrap_command, checked by running real bubblewrap sandboxes and looking at the host after."""

from __future__ import annotations

import os
import selectors
import subprocess
import time
from pathlib import Path

import pytest

from podsweep.model import Volume
from podsweep.runtime import (
    PodLaunch,
    PodProcess,
    RuntimeSetupError,
    bwrap_available,
    wrap_command,
)
from podsweep.runtime.supervisor import proc_stat

needs_bwrap = pytest.mark.skipif(not bwrap_available(), reason="bubblewrap is not installed")


def run(argv: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=30)


@pytest.fixture
def src(tmp_path: Path) -> Path:
    path = tmp_path / "src"
    path.mkdir()
    (path / "f").write_text("from the host\n")
    return path


def test_without_volumes_the_command_is_unchanged() -> None:
    command = ["python", "train.py", "--lr", "0.1"]
    wrapped = wrap_command(command, [], "/somewhere")
    assert wrapped == command and wrapped is not command


@needs_bwrap
def test_a_volume_appears_where_the_host_has_no_such_directory(src: Path) -> None:
    if os.path.lexists("/nfs"):
        pytest.skip("this host has a /nfs of its own")
    argv = wrap_command(["sh", "-c", "cat /nfs/hpo/f; touch /nfs/hpo/g; pwd"],
                        [Volume(str(src), "/nfs/hpo")], "/nfs/hpo")
    result = run(argv)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "from the host\n/nfs/hpo\n"
    assert (src / "g").exists()          # written through to the host
    assert not os.path.lexists("/nfs")   # and nothing made on the host


@needs_bwrap
def test_a_read_only_volume_cannot_be_written(src: Path) -> None:
    argv = wrap_command(["sh", "-c", "cat /psw-ro/f && touch /psw-ro/g"],
                        [Volume(str(src), "/psw-ro", read_only=True)], None)
    result = run(argv)
    assert result.returncode != 0
    assert result.stdout == "from the host\n"
    assert "Read-only file system" in result.stderr
    assert sorted(os.listdir(src)) == ["f"]
    assert not os.path.lexists("/psw-ro")


@needs_bwrap
def test_a_volume_over_an_existing_directory_hides_it_in_the_pod_only(src: Path,
                                                                       tmp_path: Path) -> None:
    dst = tmp_path / "dst"
    dst.mkdir()
    (dst / "mine").write_text("host's own\n")
    result = run(wrap_command(["ls", str(dst)], [Volume(str(src), str(dst))], None))
    assert result.returncode == 0, result.stderr
    assert result.stdout == "f\n"
    assert sorted(os.listdir(dst)) == ["mine"]


@needs_bwrap
def test_a_file_volume_and_nested_volumes(src: Path, tmp_path: Path) -> None:
    config = tmp_path / "config.json"
    config.write_text("{}\n")
    other = tmp_path / "other"
    other.mkdir()
    (other / "o").write_text("other\n")
    volumes = [Volume(str(other), "/psw-deep/a/b/inner"), Volume(str(config), "/psw-c/c.json"),
               Volume(str(src), "/psw-deep/a")]
    script = "cat /psw-c/c.json /psw-deep/a/f /psw-deep/a/b/inner/o"
    result = run(wrap_command(["sh", "-c", script], volumes, None))
    assert result.returncode == 0, result.stderr
    assert result.stdout == "{}\nfrom the host\nother\n"
    assert not os.path.lexists("/psw-deep") and not os.path.lexists("/psw-c")


@needs_bwrap
def test_the_rest_of_the_host_is_as_it_is(src: Path, tmp_path: Path) -> None:
    # Host directories stay writable, and the pid namespace is the host's: /proc/self is
    # the shell's own pid, which the control plane can signal.
    script = (f"read pid rest < /proc/self/stat; echo $$ $pid > {tmp_path}/out; "
              f"ls /dev/null /usr/bin/env")
    result = run(wrap_command(["sh", "-c", script], [Volume(str(src), "/psw-rest")], None))
    assert result.returncode == 0, result.stderr
    shell, seen = (tmp_path / "out").read_text().split()
    assert shell == seen
    assert result.stdout == "/dev/null\n/usr/bin/env\n"


def test_volumes_need_bubblewrap(src: Path, tmp_path: Path,
                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    assert not bwrap_available()
    with pytest.raises(RuntimeSetupError, match="apt-get install bubblewrap"):
        wrap_command(["true"], [Volume(str(src), "/nfs/hpo")], None)
    assert wrap_command(["true"], [], None) == ["true"]


@needs_bwrap
def test_a_missing_source_is_refused(tmp_path: Path) -> None:
    with pytest.raises(RuntimeSetupError, match="not a directory or a file"):
        wrap_command(["true"], [Volume(str(tmp_path / "absent"), "/nfs/hpo")], None)


@needs_bwrap
def test_a_sandboxed_pod_gets_its_grace_period(src: Path, tmp_path: Path) -> None:
    """bubblewrap dies of SIGTERM at once; the command it runs must still finish cleanly."""
    script = ("trap 'sleep 0.3; echo clean > /psw-pod/marker; exit 0' TERM; "
              "echo ready; while :; do sleep 0.05; done")
    argv = wrap_command(["sh", "-c", script], [Volume(str(src), "/psw-pod")], "/psw-pod")
    proc = PodProcess.launch(PodLaunch(tmp_path / "pod", argv, dict(os.environ), None,
                                       tmp_path / "pod.log", 5.0))
    try:
        assert proc.pid is not None
        deadline = time.monotonic() + 5
        while "ready" not in (tmp_path / "pod.log").read_text():
            assert time.monotonic() < deadline
            time.sleep(0.01)
        proc.terminate()
        fd = proc.pidfd()
        assert fd is not None
        with selectors.DefaultSelector() as sel:
            sel.register(fd, selectors.EVENT_READ)
            assert sel.select(5.0)
        os.close(fd)
        assert (src / "marker").read_text() == "clean\n"
        # bubblewrap's own death by the SIGTERM is the code (see sandbox's docstring).
        assert proc.exit_code() == -15 and proc.signalled
        assert [p for p in map(int, filter(str.isdigit, os.listdir("/proc")))
                if (s := proc_stat(p)) and s[2] == proc.pid and s[0] != "Z"] == []
    finally:
        proc.kill()
    assert not os.path.lexists("/psw-pod")
