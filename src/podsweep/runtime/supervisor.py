"""The per-pod supervisor: one small process that starts a pod, watches it and records its end.

Run as ``python -m podsweep.runtime.supervisor [--ready-fd FD] POD_DIR`` (or by the path of
this file), in a session of its own, so that it outlives a control plane that dies or
restarts. It closes ``FD``, if given, once ``state.json`` is written: the launcher waits on
that rather than polling. The files it shares with the control plane, all in ``POD_DIR``::

    spec.json   written by the launcher   {"argv", "env", "cwd", "log", "grace_period",
                                           "log_limit"}
    state.json  written once started      {"supervisor_pid", "supervisor_start", "boot_id",
                                           "pid", "pgid", "pod_start", "started"}
    exit.json   written once it is over   {"code", "finished", "signalled"}

From its first step to its exit the supervisor holds an exclusive ``flock`` on ``POD_DIR``
itself (close-on-exec: the pod never holds it). A pod directory with no state.json whose
lock is held is a pod still being started, however long that takes (a stalled mount), not
a lost one; :func:`lock_holder` names the supervisor.

A reader takes a file that does not parse for one not written yet. Both supervisors (this
one and the native ``supervisor.c``, which takes its command on its command line, not from
spec.json) reserve state.json and exit.json first thing, as :data:`RESERVED` bytes of
spaces, and later write each in place, in one write padded with spaces
(:func:`write_json_in_place`): on a full disk the record of a pod's end still fits, so a pod
that exited 0 is never taken for a lost one (and run again). A supervisor that cannot
reserve them exits before it starts the pod.

``pid``/``pgid`` are null and ``code`` is 127 (126 for a permission error) when the command
could not be started at all. ``code`` follows :attr:`subprocess.Popen.returncode`: the exit
status, or minus the signal number. ``*_start`` are start times in clock ticks since boot
(field 22 of ``/proc/PID/stat``): a pid together with its start time names one process even
after the pid is reused.

The pod runs in a process group of its own. On SIGTERM (or SIGINT) the supervisor sends
SIGTERM to that group, waits up to ``grace_period`` seconds for the group to end, then sends
SIGKILL; on SIGUSR1 it sends SIGKILL at once. Either way ``signalled`` is recorded. Once the
pod's main process has ended, whatever remains of its group (and any orphaned descendant,
since the supervisor is their subreaper) is killed, every child is reaped, ``exit.json`` is
written and the supervisor exits 0.

The pod's stdout and stderr go to a pipe that the supervisor drains into ``log`` (appended
to). Each time the log would pass half of ``log_limit`` bytes it is moved to ``log.1`` (the
one before is dropped) and a new one begun: the two hold at most ``log_limit`` bytes, and
the newest output. Output that cannot be written (a full disk) is dropped; the pod goes on.
exit.json is written once the pipe is drained (or after _REAP_TIMEOUT, if a process stuck
in the kernel still holds it).

Standard library only: it imports nothing from podsweep and must stay small.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import functools
import json
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

SPEC = "spec.json"
STATE = "state.json"
EXIT = "exit.json"

DEFAULT_LOG_LIMIT = 100 << 20
CODE_NOT_FOUND = 127
CODE_NOT_EXECUTABLE = 126

_PR_SET_CHILD_SUBREAPER = 36
# Once the main process is over, how long to wait for the SIGKILLed rest to be reaped: a
# process stuck in uninterruptible I/O (a hung NFS mount) must not keep the end unrecorded.
_REAP_TIMEOUT = 10.0
_TERMINATE = {signal.SIGTERM, signal.SIGINT}
KILL_NOW = signal.SIGUSR1
_WATCHED = {signal.SIGCHLD, KILL_NOW, *_TERMINATE}
WATCHED = frozenset(_WATCHED)   # blocked by a parent across the fork of a supervisor


RESERVED = 512
"""The bytes reserved for state.json and exit.json: each holds well under 300."""


def reserve(path: Path) -> None:
    """``path`` as RESERVED spaces (JSON that does not parse: a file not written yet)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
    try:
        if os.write(fd, b" " * RESERVED) != RESERVED:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
    finally:
        os.close(fd)


def write_json_in_place(path: Path, data: dict[str, Any]) -> None:
    """Write ``data`` over the space reserved in ``path``: one write, no new block needed.

    Padded with spaces to the file's size, so nothing of an earlier content is left. A
    reader may catch it half-written: then it does not parse (it starts with "{" and the
    rest of the file is spaces), which readers take for a file not written yet. Without a
    reserved file (one from an older supervisor) it is written by rename.
    """
    text = json.dumps(data).encode()
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        write_json_atomic(path, data)
        return
    try:
        size = os.fstat(fd).st_size
        if size < len(text):
            os.close(fd)
            fd = -1
            write_json_atomic(path, data)
            return
        padded = text + b" " * (size - len(text))
        if os.pwrite(fd, padded, 0) != len(padded):
            raise OSError(errno.EIO, f"short write to {path}")
    finally:
        if fd >= 0:
            os.close(fd)


def write_json_atomic(path: Path, data: dict[str, Any]) -> None:
    """Replace ``path`` in one step: a reader sees the old file or the whole new one.

    No fsync: these files describe processes, which do not outlive the machine either (a
    reboot changes the boot id and makes them moot); a crash of any process, the control
    plane's included, loses nothing that the kernel has. Binary I/O throughout: in a
    supervisor forked from the control plane, a first text codec lookup is an import.
    """
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(json.dumps(data).encode())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def read_json(path: Path) -> dict[str, Any] | None:
    """The object in ``path``, or None if there is no such file or not all of it yet."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    try:
        raw = b""
        while chunk := os.read(fd, 65536):
            raw += chunk
    finally:
        os.close(fd)
    try:
        data = json.loads(raw)
    except ValueError:      # being written, or cut short by a crash
        return None
    return data if isinstance(data, dict) else None


def lock_pod_dir(pod_dir: Path) -> int:
    """Take the supervisor's lock on ``pod_dir`` (waiting for it); the descriptor holding it."""
    fd = os.open(pod_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    fcntl.flock(fd, fcntl.LOCK_EX)
    return fd


def lock_holder(pod_dir: Path) -> int | None:
    """The pid of the supervisor holding ``pod_dir``'s lock; None if nobody holds it.

    0 if it is held by a process this one cannot see (another pid namespace).
    """
    try:
        fd = os.open(pod_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except (FileNotFoundError, NotADirectoryError):
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            st = os.fstat(fd)
        else:
            return None          # free (and freed again as fd closes)
    finally:
        os.close(fd)
    # /proc/locks: "1: FLOCK  ADVISORY  WRITE 1234 00:2e:5678 0 EOF"; "->" marks waiters
    where = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino}"
    try:
        with open("/proc/locks", "rb") as f:
            lines = f.read().decode("ascii", "replace").splitlines()
    except OSError:
        return 0
    for line in lines:
        fields = line.split()
        if len(fields) >= 6 and fields[1] == "FLOCK" and fields[5] == where and \
                fields[3] == "WRITE":
            return max(0, int(fields[4]))
    return 0


def proc_stat(pid: int) -> tuple[str, int, int, int] | None:
    """(state, ppid, pgrp, start time) of a live or zombie process, None if there is none."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            raw = f.read().decode("utf-8", "replace")
    except (FileNotFoundError, ProcessLookupError):
        return None
    # The command name (field 2) may itself hold spaces and parentheses.
    fields = raw[raw.rindex(")") + 2:].split()
    return fields[0], int(fields[1]), int(fields[2]), int(fields[19])


def start_time(pid: int) -> int | None:
    """The start time of a process that has not exited yet (zombies count as gone)."""
    stat = proc_stat(pid)
    if stat is None or stat[0] in ("Z", "X"):
        return None
    return stat[3]


@functools.cache
def boot_id() -> str:
    with open("/proc/sys/kernel/random/boot_id", "rb") as f:
        return f.read().decode().strip()


def _signal_group(pgid: int, sig: int, main_reaped: bool = False) -> None:
    """Signal the pod's group; once its main process is reaped, only while it has a member.

    Then the group's id may be free, and another session's (another pod's) to take, with
    members of its own: while /proc shows a child of ours in the group (live, or not yet
    reaped, which only we do), the id cannot be reused.
    """
    me = os.getpid()
    if main_reaped and not any(pgrp == pgid and ppid == me for _, ppid, pgrp, _ in _scan()):
        return
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def _scan() -> list[tuple[str, int, int, int]]:
    """(state, ppid, pgrp, start time) of every process in /proc (their pid as the last)."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            stat = proc_stat(int(entry))
            if stat is not None:
                found.append((stat[0], stat[1], stat[2], int(entry)))
    return found


def _kill_everything(pgid: int, main_reaped: bool = False) -> None:
    """SIGKILL the pod's group and every child of ours, including orphans that left it."""
    if not main_reaped:
        _signal_group(pgid, signal.SIGKILL)
    try:
        # a peek (WNOWAIT) that reaps nothing: with no child at all nothing of the pod is
        # left (we are its subreaper), and the scan of /proc below, milliseconds on a busy
        # machine, is skipped
        os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOHANG | os.WNOWAIT)
    except ChildProcessError:
        return
    me = os.getpid()
    procs = _scan()
    for state, ppid, _, pid in procs:
        if ppid == me and state not in ("Z", "X"):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    if main_reaped and any(pgrp == pgid and ppid == me for _, ppid, pgrp, _ in procs):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, signal.SIGKILL)


def _reap(main: int) -> tuple[bool, int | None]:
    """Reap every child that has ended: (any child left, the main process's status if reaped)."""
    status: int | None = None
    while True:
        try:
            pid, raw = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return False, status
        if pid == 0:
            return True, status
        if pid == main:
            status = raw


def _supervise(main: int, grace_period: float) -> tuple[int, bool]:
    """Watch the pod until every process of it is gone: (its code, whether it was signalled).

    The signals that drive this loop are blocked and taken with sigtimedwait, so none is
    lost between a check and the wait, and nothing runs inside a signal handler.
    """
    code: int | None = None
    signalled = False
    kill_at: float | None = None     # when the grace period of a SIGTERM runs out
    give_up_at: float | None = None  # when to stop waiting for SIGKILLed processes
    while True:
        children_left, status = _reap(main)
        now = time.monotonic()
        if status is not None:
            code = os.waitstatus_to_exitcode(status)
            # After a SIGTERM the rest of the group keeps its grace period: the main process
            # may be a wrapper (a shell script that runs the training) that dies of the
            # SIGTERM at once, while the command it runs is still shutting down cleanly.
            if not signalled:
                _kill_everything(main, main_reaped=True)
                give_up_at = now + _REAP_TIMEOUT
        if not children_left:
            break
        if kill_at is not None and now >= kill_at:
            _kill_everything(main, main_reaped=code is not None)
            kill_at = None
            give_up_at = now + _REAP_TIMEOUT
        elif give_up_at is not None:
            if now >= give_up_at:
                break
            # A process forked while the group was being killed would otherwise linger.
            _kill_everything(main, main_reaped=code is not None)
        deadline = min((t for t in (kill_at, give_up_at) if t is not None), default=now + 1.0)
        info = signal.sigtimedwait(_WATCHED, max(0.0, min(deadline - now, 1.0)))
        if info is None:
            continue
        if info.si_signo == KILL_NOW:
            signalled = True
            _kill_everything(main, main_reaped=code is not None)
            kill_at = None
            if give_up_at is None:
                give_up_at = time.monotonic() + _REAP_TIMEOUT
        elif info.si_signo in _TERMINATE and not signalled:
            signalled = True
            _signal_group(main, signal.SIGTERM, main_reaped=code is not None)
            if code is None:
                kill_at = time.monotonic() + grace_period
    # A request that came as everything was ending still counts: the caller asked for it.
    signalled = signalled or bool(signal.sigpending() & (_TERMINATE | {KILL_NOW}))
    # The main process is reaped before the loop ends, unless it hung past _REAP_TIMEOUT.
    return (code if code is not None else -int(signal.SIGKILL)), signalled


class LogSink:
    """The pod's log, written from the pipe its output goes to; see the module's docstring."""

    def __init__(self, path: str, limit: int) -> None:
        self.path = path
        self.limit = limit
        self.fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
        self.size = os.fstat(self.fd).st_size

    def write(self, data: bytes) -> None:
        if self.size > 0 and self.size + len(data) > self.limit // 2:
            try:
                os.replace(self.path, self.path + ".1")
                fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC,
                             0o644)
            except OSError:
                try:
                    os.ftruncate(self.fd, 0)     # the limit rather than the output
                except OSError:
                    return
            else:
                os.close(self.fd)
                self.fd = fd
            self.size = 0
        view = memoryview(data)
        while view:
            try:
                n = os.write(self.fd, view)
            except OSError:
                return           # a full disk: dropped
            view = view[n:]
            self.size += n

    def drain(self, fd: int) -> None:
        """Copy the pipe ``fd`` into the log until every writer has closed it."""
        while chunk := os.read(fd, 65536):
            self.write(chunk)
        os.close(fd)

    def close(self) -> None:
        os.close(self.fd)


def _become_subreaper() -> None:
    # Descendants orphaned inside the pod are re-parented to us rather than to init, so we
    # can kill them even if they left the pod's process group, and reap them; and "no child
    # left" then means "nothing of the pod left", even once a wrapper (a shell script) has
    # died and left the command it ran behind.
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    except (OSError, AttributeError):
        pass


def _spawn(argv: list[str], env: dict[str, str], cwd: str | None, out_fd: int) -> int:
    """Start the pod's command in a session of its own; return its pid.

    posix_spawn (vfork and exec) rather than fork: no copy of this process's page tables,
    which matters when the supervisor is itself a fork of a large control plane. Ignored
    signals and the blocked mask both survive exec; the pod starts with neither.
    """
    if cwd is not None:
        os.chdir(cwd)                 # the supervisor's own directory does not matter
    # posix_spawnp looks the command up in the caller's PATH: make it the pod's
    os.environ["PATH"] = env.get("PATH", os.defpath)
    # every signal to its default, but for SIGKILL and SIGSTOP (which have no other) and
    # the C library's own real-time signals below SIGRTMIN (asked to reset, glibc leaves
    # them ignored)
    defaults = {s for s in signal.valid_signals()
                if s not in (signal.SIGKILL, signal.SIGSTOP) and not 32 <= s < signal.SIGRTMIN}
    return os.posix_spawnp(
        argv[0], argv, env, setsid=True, setsigmask=(), setsigdef=defaults,
        file_actions=[(os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
                      (os.POSIX_SPAWN_DUP2, out_fd, 1), (os.POSIX_SPAWN_DUP2, out_fd, 2)])


def run(pod_dir: Path, ready_fd: int | None = None) -> int:
    lock_pod_dir(pod_dir)     # held until we exit (see the module's docstring)
    if ready_fd is not None:
        # posix_spawn closes nothing: a pod holding this pipe would hide our readiness
        os.set_inheritable(ready_fd, False)
    spec = read_json(pod_dir / SPEC)
    if spec is None:
        print(f"no {SPEC} in {pod_dir}", file=sys.stderr)
        return 2
    # Dispositions are inherited: an ignored SIGCHLD would reap our children behind our back,
    # and an ignored SIGTERM would be discarded before sigtimedwait could take it.
    for sig in _WATCHED:
        signal.signal(sig, signal.SIG_DFL)
    # No terminal is ours (a session of our own); a stray SIGHUP must not lose the pod.
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    _become_subreaper()
    # Blocked before the child exists, so that a SIGTERM sent as soon as state.json is
    # readable is forwarded, not fatal to the supervisor.
    signal.pthread_sigmask(signal.SIG_BLOCK, _WATCHED)
    try:
        for name in (STATE, EXIT):
            reserve(pod_dir / name)
    except OSError as e:
        # nothing started: the pod is not lost, it never ran (and runs again)
        print(f"cannot reserve the pod's records in {pod_dir}: {e}", file=sys.stderr)
        return 1
    state: dict[str, Any] = {"supervisor_pid": os.getpid(),
                             "supervisor_start": start_time(os.getpid()),
                             "boot_id": boot_id(), "pid": None, "pgid": None,
                             "pod_start": None, "started": time.time()}
    sink = LogSink(spec["log"], int(spec.get("log_limit", DEFAULT_LOG_LIMIT)))
    out_r, out_w = os.pipe()       # close-on-exec, as Python's are; dup2 clears it
    try:
        child = _spawn(spec["argv"], spec["env"], spec["cwd"], out_w)
    except OSError as e:
        os.close(out_r)
        os.close(out_w)
        sink.write(f"podsweep: cannot start the pod's command: {e}\n".encode())
        sink.close()
        write_json_in_place(pod_dir / STATE, state)
        _close(ready_fd)
        code = CODE_NOT_EXECUTABLE if isinstance(e, PermissionError) else CODE_NOT_FOUND
        write_json_in_place(pod_dir / EXIT, {"code": code, "finished": time.time(),
                                           "signalled": False})
        return 0
    os.close(out_w)                # the pod's now: end of file once all of it is gone
    # A thread of its own: the loop below waits on signals alone. It starts with them
    # blocked, as they are here, so that only sigtimedwait takes them.
    drainer = threading.Thread(target=sink.drain, args=(out_r,), daemon=True)
    drainer.start()
    stat = proc_stat(child)   # unreaped, so there even if the command ended already
    state.update(pid=child, pgid=child, pod_start=None if stat is None else stat[3])
    try:
        write_json_in_place(pod_dir / STATE, state)
        _close(ready_fd)
        code, signalled = _supervise(child, float(spec["grace_period"]))
        drainer.join(_REAP_TIMEOUT)    # the last of the output, before the end is recorded
    except BaseException:
        # A pod nobody watches would hold its GPUs for good. (Reaped already, its pid no
        # longer names it.)
        stat = proc_stat(child)
        _kill_everything(child, main_reaped=stat is None or stat[1] != os.getpid())
        raise
    write_json_in_place(pod_dir / EXIT, {"code": code, "finished": time.time(),
                                       "signalled": signalled})
    return 0


def _close(fd: int | None) -> None:
    if fd is not None:
        with contextlib.suppress(OSError):
            os.close(fd)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    ready_fd = None
    if len(args) == 3 and args[0] == "--ready-fd" and args[1].isdigit():
        ready_fd, args = int(args[1]), args[2:]
    if len(args) != 1:
        print("usage: python -m podsweep.runtime.supervisor [--ready-fd FD] POD_DIR",
              file=sys.stderr)
        return 2
    return run(Path(args[0]).absolute(), ready_fd)


if __name__ == "__main__":
    sys.exit(main())
