"""Building the native supervisor (and the sandbox, by the same code): cached by its
source, a clear error, the Python fallback.

The native supervisor's behaviour is tested with the others' in test_process.py, the
sandbox's in test_sandbox.py; here, how they come to be. Real compiler runs into temporary
caches.
"""

from __future__ import annotations

import logging
import os
import signal
import time
from dataclasses import replace
from pathlib import Path

import pytest

from podsweep.runtime import (
    PodLaunch,
    PodProcess,
    RuntimeSetupError,
    native_supervisor,
    process,
)
from podsweep.runtime.native import SANDBOX, SUPERVISOR, build, compiler

# CI sets PODSWEEP_REQUIRE_NATIVE=1 (and installs a compiler): there these tests never skip.
needs_cc = pytest.mark.skipif(
    compiler() is None and os.environ.get("PODSWEEP_REQUIRE_NATIVE") != "1",
    reason="no C compiler here")


@needs_cc
def test_the_build_is_cached_by_its_source(tmp_path: Path) -> None:
    first = build(tmp_path)
    assert os.access(first, os.X_OK) and first.parent == tmp_path
    built = first.stat().st_mtime_ns
    assert build(tmp_path) == first and first.stat().st_mtime_ns == built   # not rebuilt
    assert [p.name for p in tmp_path.iterdir()] == [first.name]   # no temporary left
    # another source (another version of podsweep) gets a binary of its own
    other = tmp_path / "other"
    other.mkdir()
    (other / "supervisor.c").write_bytes(SUPERVISOR.source.read_bytes() + b"\n/* v2 */\n")
    second = build(tmp_path, replace(SUPERVISOR, source=other / "supervisor.c"))
    assert second != first and second.name.startswith("podsweep-supervisor-")
    # and another program, by the same machinery, beside them
    sandbox = build(tmp_path, SANDBOX)
    assert sandbox.name.startswith("podsweep-sandbox-") and os.access(sandbox, os.X_OK)
    assert len({first, second, sandbox}) == 3


def test_a_compiler_that_fails_is_a_clear_error(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CC", "false")
    with pytest.raises(RuntimeSetupError, match="cannot build the native pod supervisor"):
        build(tmp_path)
    assert list(tmp_path.iterdir()) == []


@needs_cc
def test_a_compiler_without_the_c_librarys_headers_says_so_in_one_line(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # a machine with gcc but not libc6-dev
    cc = tmp_path / "cc"
    cc.write_text(f'#!/bin/sh\nexec {compiler()} -nostdinc "$@"\n')
    cc.chmod(0o755)
    monkeypatch.setenv("CC", str(cc))
    with pytest.raises(RuntimeSetupError) as info:
        build(tmp_path / "cache", SANDBOX)
    assert str(info.value).startswith(f"cannot build podsweep's sandbox with {cc}: ")
    assert "error: " in str(info.value) and "dirent.h" in str(info.value)   # the first
    assert "\n" not in str(info.value)


def test_without_a_compiler_the_python_supervisor_is_used(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.delenv("CC", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    monkeypatch.setenv("PODSWEEP_CACHE", str(tmp_path / "cache"))
    with caplog.at_level(logging.WARNING, logger="podsweep.runtime"):
        assert native_supervisor.__wrapped__() is None     # not the process's cached answer
    assert "using the Python pod supervisor: no C compiler" in caplog.text


def test_the_python_supervisor_can_be_asked_for(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PODSWEEP_SUPERVISOR", "python")
    assert native_supervisor.__wrapped__() is None


@needs_cc
def test_the_pods_environment_stays_off_the_command_line(tmp_path: Path) -> None:
    # /proc/PID/cmdline is anyone's to read; /proc/PID/environ is the owner's alone.
    proc = PodProcess.launch(PodLaunch(tmp_path / "pod", ["sleep", "30"],
                                       {"PATH": os.environ["PATH"], "API_KEY": "s3cret"},
                                       None, tmp_path / "pod.log", 0.5), supervisor="native")
    try:
        cmdline = Path(f"/proc/{proc.supervisor_pid}/cmdline").read_bytes()
        assert b"s3cret" not in cmdline and b"sleep" in cmdline
        # the supervisor goes on as soon as the pod's exec has replaced its memory, a moment
        # before the kernel has put the new environment in place: until then it reads empty
        environ = Path(f"/proc/{proc.pid}/environ")
        deadline = time.monotonic() + 10
        while not environ.read_bytes() and time.monotonic() < deadline:
            time.sleep(0.01)
        assert b"API_KEY=s3cret" in environ.read_bytes()
    finally:
        proc.kill()
    assert proc.exit_code() == -signal.SIGKILL


@needs_cc
def test_a_binary_removed_from_the_cache_hands_over_to_the_python_supervisor(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # Not built again in the launch: that could block the control plane's loop for minutes
    # and fail, failing every later pod.
    monkeypatch.setenv("PODSWEEP_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(process, "_native_gone", False, raising=False)
    native_supervisor.cache_clear()
    try:
        binary = native_supervisor()
        assert binary is not None and binary.parent == tmp_path / "cache"
        binary.unlink()                                  # someone cleaned ~/.cache
        for name in ("a", "b"):
            proc = PodProcess.launch(PodLaunch(tmp_path / name, ["true"], dict(os.environ),
                                               None, tmp_path / f"{name}.log", 0.5),
                                     supervisor="native")
            assert (tmp_path / name / "spec.json").exists()     # the Python one's input
            fd = proc.pidfd()
            if fd is not None:
                os.waitid(os.P_PIDFD, fd, os.WEXITED | os.WNOWAIT)
                os.close(fd)
            assert proc.exit_code() == 0
        assert not binary.exists()
        assert sum("native pod supervisor" in r.getMessage() for r in caplog.records) == 1
    finally:
        native_supervisor.cache_clear()     # the other tests' answer: the default cache


def cpus_allowed(pid: int) -> str:
    status = Path(f"/proc/{pid}/status").read_text()
    return next(line.split(":", 1)[1].strip() for line in status.splitlines()
                if line.startswith("Cpus_allowed_list:"))


@needs_cc
@pytest.mark.parametrize("cpus", ["all", "first-two", "one"])
def test_the_supervisor_and_its_pod_get_the_launchers_cpus(tmp_path: Path, cpus: str) -> None:
    # The launcher pins itself to one CPU for the spawn (so the new process runs there at
    # once); neither the supervisor nor its pod may stay pinned.
    allowed = os.sched_getaffinity(0)
    wanted = {"all": allowed, "first-two": set(sorted(allowed)[:2]),
              "one": {min(allowed)}}[cpus]
    os.sched_setaffinity(0, wanted)
    try:
        proc = PodProcess.launch(PodLaunch(tmp_path / "pod", ["sleep", "30"],
                                           dict(os.environ), None, tmp_path / "pod.log", 0.5),
                                 supervisor="native")
        assert os.sched_getaffinity(0) == wanted          # the launcher's own is back
    finally:
        os.sched_setaffinity(0, allowed)
    try:
        assert proc.pid is not None
        expected = cpus_allowed(os.getpid()) if cpus == "all" else None
        for pid in (proc.supervisor_pid, proc.pid):
            assert os.sched_getaffinity(pid) == wanted, pid
        if expected is not None:
            assert cpus_allowed(proc.pid) == expected
    finally:
        proc.kill()
