"""Starting a pod's supervisor: what a launch takes, and the ways a supervisor is started.

:meth:`podsweep.runtime.process.PodProcess.launch` picks the supervisor and waits for its
report; this module makes the pod's directory, writes the Python supervisor's input
(``spec.json``), and starts the supervisor itself: the native one posix_spawned
(:func:`spawn_native`), the Python one forked (:func:`fork_supervisor`). Each starts in a
session of its own with the signals it waits for blocked, so that one sent at once is not
lost.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import functools
import gc
import json
import os
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from . import supervisor as _sv
from .errors import RuntimeSetupError

SUPERVISOR_LOG = "supervisor.log"


@dataclass
class PodLaunch:
    """What it takes to start one pod."""

    pod_dir: Path         # made by launch (it must not exist); holds state.json, exit.json
    argv: list[str]       # already wrapped by wrap_command if the pod has volumes
    env: dict[str, str]   # the pod's whole environment
    cwd: str | None       # None: the caller's (and always None for a wrapped argv)
    log: Path             # stdout and stderr are appended here (then log.1: see log_limit)
    grace_period: float   # seconds between SIGTERM and SIGKILL
    log_limit: int = _sv.DEFAULT_LOG_LIMIT   # bytes of log and log.1 together, at most


class Child:
    """The part of Popen's interface that PodProcess uses, for a forked or spawned one."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.returncode: int | None = None

    def poll(self) -> int | None:
        if self.returncode is None:
            try:
                pid, status = os.waitpid(self.pid, os.WNOHANG)
            except ChildProcessError:
                self.returncode = 0
                return self.returncode
            if pid:
                self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.poll() is None:
            if deadline is not None and time.monotonic() >= deadline:
                raise subprocess.TimeoutExpired(str(self.pid), timeout or 0.0)
            time.sleep(0.001)
        assert self.returncode is not None
        return self.returncode

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signal.SIGKILL)


def make_pod_dir(pod_dir: Path) -> None:
    """The pod's directory, made here and only here: a second launch into it is refused.

    Made just before the supervisor starts, it tells :meth:`PodProcess.adopt` that a
    supervisor may be on its way.
    """
    try:
        os.mkdir(pod_dir)
    except FileNotFoundError:
        pod_dir.parent.mkdir(parents=True, exist_ok=True)
        make_pod_dir(pod_dir)
    except FileExistsError:
        raise RuntimeSetupError(f"{pod_dir} already belongs to a pod") from None


def write_spec(pod_dir: Path, spec: PodLaunch, log: Path) -> None:
    """spec.json, the Python supervisor's input, written whole before it starts."""
    data = json.dumps({"argv": list(spec.argv), "env": dict(spec.env), "cwd": spec.cwd,
                       "log": str(log), "grace_period": float(spec.grace_period),
                       "log_limit": int(spec.log_limit)}).encode()
    fd = os.open(pod_dir / _sv.SPEC, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
    finally:
        os.close(fd)


def move_fd(fd: int) -> int:
    """``fd`` moved above the standard descriptors and 3 (close-on-exec, as Python's are)."""
    moved = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 4)
    os.close(fd)
    return moved


def fork_supervisor(pod_dir: Path, ready_r: int, ready_w: int) -> int:
    """Fork a supervisor for ``pod_dir``; in the child, run it and never return.

    The signals the supervisor waits for are blocked across the fork: until the child has
    put its own dispositions in place, the parent's handlers (uvicorn's SIGTERM handler,
    say) would otherwise swallow a SIGTERM sent at once. Blocked, it stays pending for the
    supervisor's sigtimedwait.
    """
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, _sv.WATCHED)
    try:
        pid = os.fork()
    except BaseException:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)
        raise
    if pid:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)
        return pid
    code = 1
    try:
        # The parent's garbage must not be collected here: a finalizer of one of its objects
        # would close "its" descriptor, whose number, after the closerange below, may by
        # then be one of ours.
        gc.disable()
        os.setsid()
        null = os.open(os.devnull, os.O_RDONLY)
        out = os.open(pod_dir / SUPERVISOR_LOG, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        os.dup2(null, 0)
        os.dup2(out, 1)
        os.dup2(out, 2)
        # Nothing of the parent's (its listening socket, its database) stays open here.
        keep = os.dup2(ready_w, 3)
        os.closerange(keep + 1, os.sysconf("SC_OPEN_MAX"))
        code = _sv.run(pod_dir, keep)
    except BaseException:
        import traceback

        # to descriptor 2, the supervisor's log: sys.stderr is the parent's object, which
        # may not write there (a test runner's capture)
        os.write(2, traceback.format_exc().encode(errors="replace"))
    finally:
        os._exit(code)


def spawn_native(binary: Path, spec: PodLaunch, pod_dir: Path, log: Path,
                  ready_w: int) -> int:
    """posix_spawn the native supervisor for ``pod_dir``; its pid.

    vfork and exec: the caller's size does not matter and no code of the caller runs in
    the child. The signals the supervisor waits for start blocked, so one sent at once
    stays pending until it takes it; the pod's environment is the supervisor's own.
    """
    argv = ["podsweep-supervisor", "--ready-fd", "3"]
    allowed = os.sched_getaffinity(0)
    here = _current_cpu() if len(allowed) > 1 and max(allowed) < 1024 else None
    if here is not None:
        argv += ["--cpus", _cpu_list(frozenset(allowed))]
    if spec.cwd is not None:
        argv += ["--cwd", spec.cwd]
    argv += ["--log-limit", str(int(spec.log_limit))]
    argv += [str(log), repr(float(spec.grace_period)), str(pod_dir), "--", *spec.argv]
    # We wait until the child has exec'd. A new process goes to the idlest CPU, which on a
    # busy machine may make it wait there for milliseconds while ours idles; pinned to our
    # CPU, it runs as soon as we block. The supervisor takes back our CPU list (--cpus).
    pinned = False
    if here is not None and here in allowed:
        with contextlib.suppress(OSError):
            os.sched_setaffinity(0, {here})
            pinned = True
    try:
        return os.posix_spawn(
            binary, argv, spec.env, setsid=True, setsigmask=_sv.WATCHED,
            setsigdef=_sv.WATCHED,
            # nothing of the caller's stays open there: Python's descriptors are
            # close-on-exec
            file_actions=[(os.POSIX_SPAWN_DUP2, ready_w, 3),
                          (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDWR, 0),
                          (os.POSIX_SPAWN_DUP2, 0, 1), (os.POSIX_SPAWN_DUP2, 0, 2)])
    finally:
        if pinned:
            os.sched_setaffinity(0, allowed)


@functools.cache
def _sched_getcpu() -> Callable[[], int] | None:
    try:
        getcpu: Callable[[], int] = ctypes.CDLL(None, use_errno=True).sched_getcpu
    except (OSError, AttributeError):
        return None
    return getcpu


def _current_cpu() -> int | None:
    """The CPU this thread runs on, None if the C library cannot say."""
    getcpu = _sched_getcpu()
    cpu = getcpu() if getcpu is not None else -1
    return cpu if cpu >= 0 else None


@functools.lru_cache(maxsize=8)
def _cpu_list(cpus: frozenset[int]) -> str:
    """``{0, 1, 2, 3, 6}`` as ``0-3,6``."""
    runs: list[list[int]] = []
    for cpu in sorted(cpus):
        if runs and runs[-1][1] == cpu - 1:
            runs[-1][1] = cpu
        else:
            runs.append([cpu, cpu])
    return ",".join(str(a) if a == b else f"{a}-{b}" for a, b in runs)
