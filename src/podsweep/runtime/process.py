"""The control plane's handle on one running pod: launch, adopt, watch, terminate, kill.

Each pod runs under a supervisor process of its own, in a session of its own, that records
the pod's start and end in the pod's directory (the contract is in
:mod:`podsweep.runtime.supervisor`'s docstring). The control plane can therefore die and
restart while pods run: :meth:`PodProcess.adopt` finds the pod again from those files, and
a pod that ended meanwhile has left its exit code.

Three supervisors keep that contract (:data:`SUPERVISORS`): ``native``, the C one
(``supervisor.c``, built on first use by :mod:`podsweep.runtime.native`), posix_spawned;
``fork``, the Python one in a fork of the caller; ``exec``, the Python one in a new
interpreter. The first is the fastest by far and the default wherever it can be built.
:mod:`podsweep.runtime.spawn` starts the first two.

Watching is event-driven: :meth:`PodProcess.pidfd` becomes readable when the supervisor
exits, which it does only after the pod's whole process group is gone and ``exit.json`` is
written; then :meth:`PodProcess.exit_code` has the answer.

Pids are reused, so a pid is never trusted alone: the supervisor's and the pod's start times
(and the boot id) recorded in ``state.json`` must match the live process before it is
signalled, and signals to the supervisor go through a pidfd.
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Literal, get_args

from . import supervisor as _sv
from .errors import RuntimeSetupError
from .native import native_supervisor
from .spawn import (
    SUPERVISOR_LOG,
    Child,
    PodLaunch,
    fork_supervisor,
    make_pod_dir,
    move_fd,
    spawn_native,
    write_spec,
)

log = logging.getLogger("podsweep.runtime")

SupervisorKind = Literal["native", "fork", "exec"]
SUPERVISORS: tuple[SupervisorKind, ...] = get_args(SupervisorKind)

# How long launch() waits for the supervisor to report the pod started.
_START_TIMEOUT = 30.0
# How long adopt() waits for a supervisor that has not reported yet.
_ADOPT_WAIT = 2.0
# How long kill() lets the supervisor record the end before killing it too.
_KILL_WAIT = 2.0


# Set once the native supervisor's binary has vanished from under a running process: every
# later launch asking for it gets the forked Python supervisor instead.
_native_gone = False


def _native_is_gone(binary: Path) -> None:
    global _native_gone
    if not _native_gone:
        _native_gone = True
        log.warning("the native pod supervisor %s is gone; pods start under the Python "
                    "one from now on", binary)


def _wait_readable(fd: int, timeout: float) -> bool:
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    return bool(poller.poll(timeout * 1000))


def _session_of(pid: int) -> int | None:
    """The session of a live (not zombie) process; None if it has ended."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            raw = f.read().decode("utf-8", "replace")
    except OSError:
        return None
    # state, ppid, pgrp, session follow the command name, which may itself hold ")"
    fields = raw[raw.rindex(")") + 2:].split()
    return None if fields[0] in ("Z", "X") else int(fields[3])


def _kill_session(sid: int) -> None:
    """SIGKILL what is left of a pod whose supervisor is gone, and wait until it is dead.

    The pod leads a session of its own: a process that left the pod's group (shell job
    control, a launcher's own groups) is still in it. The wait matters as much as the
    kill: the index may run again as soon as this returns, and two live pods of one index
    would break what the engine promises (podsweep.hpo hands the rerun its predecessor's
    trial on that promise). A process SIGKILLed ends within milliseconds; one stuck in the
    kernel (a hung NFS mount) runs no more of its own code either, and after _KILL_WAIT it
    is left to die on its own, logged.
    """
    deadline = time.monotonic() + _KILL_WAIT
    while True:
        left = [int(e) for e in os.listdir("/proc")
                if e.isdigit() and _session_of(int(e)) == sid]
        if not left or time.monotonic() >= deadline:
            if left:
                log.warning("session %d: processes %s still alive %.0f s after SIGKILL",
                            sid, left, _KILL_WAIT)
            return
        poller = select.poll()
        fds: list[int] = []
        waiting: set[int] = set()
        try:
            for pid in left:
                try:
                    fd = os.pidfd_open(pid)
                except ProcessLookupError:
                    continue
                fds.append(fd)
                # the pidfd names one process: still the member found above, or one that
                # took its pid since (then not ours to signal)
                if _session_of(pid) == sid:
                    with contextlib.suppress(ProcessLookupError):
                        signal.pidfd_send_signal(fd, signal.SIGKILL)
                    poller.register(fd, select.POLLIN)
                    waiting.add(fd)
            # a pidfd is readable once its process has exited; then look again: a process
            # forked just before its parent's kill is a member too
            while waiting and time.monotonic() < deadline:
                for fd, _ in poller.poll(max(0.0, deadline - time.monotonic()) * 1000):
                    waiting.discard(fd)
                    poller.unregister(fd)
        finally:
            for fd in fds:
                os.close(fd)


class PodProcess:
    """One pod, as the control plane sees it; see the module's docstring.

    ``pid`` is the pod's main process, which leads the pod's process group (``pgid == pid``);
    it is None when the command could not be started. ``started`` and, once
    :meth:`exit_code` is known, ``finished`` are wall-clock times (``time.time()``);
    ``signalled`` says that :meth:`terminate` or :meth:`kill` asked for the end, and ``lost``
    that the supervisor vanished without recording the end (it was SIGKILLed): the first
    :meth:`exit_code` to notice kills the pod's group, records the code -9 and says so.
    """

    pod_dir: Path
    supervisor_pid: int

    def __init__(self, pod_dir: Path, state: dict[str, Any],
                 supervisor: subprocess.Popen[bytes] | Child | None = None) -> None:
        self.pod_dir = pod_dir
        self.supervisor_pid = int(state["supervisor_pid"])
        self.pid: int | None = None if state.get("pid") is None else int(state["pid"])
        self.started = float(state["started"])
        self.finished: float | None = None
        self.signalled = False
        self.lost = False
        self._supervisor_start: int | None = state.get("supervisor_start")
        self._pod_start: int | None = state.get("pod_start")
        # Pids and start times only name processes within the boot that recorded them.
        self._this_boot = state.get("boot_id") in (None, _sv.boot_id())
        self._popen = supervisor   # set when the supervisor is our child, to reap it
        self._code: int | None = None
        self._ready_fd: int | None = None   # set until a launch(wait=False) has settled

    def settle(self, block: bool = True) -> None:
        """After ``launch(wait=False)``: take in what the supervisor reported in state.json.

        With ``block``, waits for the report (milliseconds, or until the supervisor died).
        """
        if self._ready_fd is None:
            return
        if not _wait_readable(self._ready_fd, _START_TIMEOUT if block else 0.0):
            return
        os.close(self._ready_fd)
        self._ready_fd = None
        state = _sv.read_json(self.pod_dir / _sv.STATE)
        if state is not None:
            self.pid = None if state.get("pid") is None else int(state["pid"])
            self._pod_start = state.get("pod_start")
            self.started = float(state["started"])

    def __repr__(self) -> str:
        return (f"PodProcess({str(self.pod_dir)!r}, supervisor_pid={self.supervisor_pid}, "
                f"pid={self.pid}, code={self._code})")

    @classmethod
    def launch(cls, spec: PodLaunch, *, supervisor: SupervisorKind | None = None,
               wait: bool = True) -> PodProcess:
        """Start the pod's supervisor; return once the pod has started (or failed to).

        ``supervisor`` is one of :data:`SUPERVISORS`; by default the native one where it can
        be built, else ``exec``. ``native`` starts in well under a millisecond; ``exec``
        blocks for an interpreter's start-up, some tens of milliseconds; ``fork`` takes a
        millisecond or so and suits only a caller with no other threads. A command that
        cannot be run is not an error here: the pod ends at once with code 127.

        With ``wait=False`` it returns right after the supervisor is started: ``pid`` stays
        None until the supervisor has reported (:meth:`settle`), and a supervisor that dies
        before starting the pod shows as a lost pod instead of an exception here.
        """
        if supervisor is None:
            supervisor = "native" if native_supervisor() is not None else "exec"
        if supervisor == "native" and _native_gone:
            supervisor = "fork"
        binary = native_supervisor() if supervisor == "native" else None
        if supervisor == "native" and binary is None:
            raise RuntimeSetupError("the native pod supervisor cannot be built here (see "
                                    "the log); use the Python one")
        pod_dir = spec.pod_dir.absolute()
        make_pod_dir(pod_dir)
        log = spec.log.absolute()
        if log.parent != pod_dir:
            log.parent.mkdir(parents=True, exist_ok=True)
        if binary is None:
            write_spec(pod_dir, spec, log)
        ready_r, ready_w = os.pipe()
        if ready_w <= 3:   # dup2 onto itself would keep it close-on-exec
            ready_w = move_fd(ready_w)
        popen: subprocess.Popen[bytes] | Child
        try:
            if binary is not None:
                try:
                    popen = Child(spawn_native(binary, spec, pod_dir, log, ready_w))
                except FileNotFoundError:
                    # The cache was cleaned under us. Building it again could block the
                    # caller (the control plane's event loop) for minutes, and may fail:
                    # the Python supervisor keeps the same contract, from now on.
                    _native_is_gone(binary)
                    write_spec(pod_dir, spec, log)
                    popen = Child(fork_supervisor(pod_dir, ready_r, ready_w))
            elif supervisor == "fork":
                popen = Child(fork_supervisor(pod_dir, ready_r, ready_w))
            else:
                # Run by its path, isolated (-I): the supervisor needs only the standard
                # library, so neither the caller's sys.path nor PYTHON* variables can keep
                # it from starting. The blocked signals are inherited: one sent while the
                # interpreter starts waits for the supervisor.
                previous = signal.pthread_sigmask(signal.SIG_BLOCK, _sv.WATCHED)
                try:
                    with open(pod_dir / SUPERVISOR_LOG, "ab") as out:
                        popen = subprocess.Popen(
                            [sys.executable, "-I", _sv.__file__, "--ready-fd", str(ready_w),
                             str(pod_dir)], pass_fds=(ready_w,), stdin=subprocess.DEVNULL,
                            stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
                finally:
                    signal.pthread_sigmask(signal.SIG_SETMASK, previous)
        except BaseException:
            os.close(ready_r)
            raise
        finally:
            os.close(ready_w)
        if not wait:
            # Our child, not yet reaped: its pid names it alone, no start time needed.
            provisional: dict[str, Any] = {
                "supervisor_pid": popen.pid, "supervisor_start": None,
                "boot_id": None, "pid": None, "started": time.time()}
            proc = cls(pod_dir, provisional, popen)
            proc._ready_fd = ready_r
            return proc
        try:
            # End of file: the supervisor wrote state.json, or died trying.
            ready = _wait_readable(ready_r, _START_TIMEOUT)
        finally:
            os.close(ready_r)
        state = _sv.read_json(pod_dir / _sv.STATE)
        if state is None:
            if ready:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    popen.wait(5.0)
                raise RuntimeSetupError(f"the pod supervisor exited with {popen.returncode} "
                                        f"before starting the pod: {cls._log_tail(pod_dir)}")
            popen.kill()
            popen.wait()
            raise RuntimeSetupError(f"the pod supervisor did not start the pod within "
                                    f"{_START_TIMEOUT:.0f} s: {cls._log_tail(pod_dir)}")
        return cls(pod_dir, state, popen)

    @classmethod
    def adopt(cls, pod_dir: Path) -> PodProcess | None:
        """The pod launched in ``pod_dir`` by an earlier control plane; None if none started.

        A pod whose supervisor is gone is still returned: :meth:`exit_code` then gives the
        code it recorded, or declares it lost.
        """
        pod_dir = pod_dir.absolute()
        state = _sv.read_json(pod_dir / _sv.STATE)
        if state is None and pod_dir.is_dir():
            # Launched, perhaps without waiting, by a control plane that then died. A
            # supervisor holds the pod directory's lock from its first step: while it does,
            # it is still starting the pod, however long that takes (a stalled mount), and
            # declaring the pod lost would run its index twice. The wait covers only the
            # moment between the directory's making and the supervisor's first step.
            deadline = time.monotonic() + _ADOPT_WAIT
            while state is None:
                holder = _sv.lock_holder(pod_dir)
                if holder:
                    starting = cls._starting(pod_dir, holder)
                    if starting is not None:
                        return starting
                elif time.monotonic() >= deadline:    # free, or held by one we cannot see
                    break
                time.sleep(0.02)
                state = _sv.read_json(pod_dir / _sv.STATE)
        return None if state is None else cls(pod_dir, state)

    @classmethod
    def _starting(cls, pod_dir: Path, holder: int) -> PodProcess | None:
        """The pod whose supervisor ``holder`` holds its lock but has not reported yet.

        Watched like any other through the supervisor; the pod's pid is learnt from
        state.json when needed (:meth:`_kill_pod_group`). None if that changed meanwhile.
        """
        started = _sv.start_time(holder)
        # the pid still holds the lock after its start time was read: that time is its own
        if started is None or _sv.lock_holder(pod_dir) != holder or \
                _sv.read_json(pod_dir / _sv.STATE) is not None:
            return None
        return cls(pod_dir, {"supervisor_pid": holder, "supervisor_start": started,
                             "boot_id": _sv.boot_id(), "pid": None, "started": time.time()})

    @staticmethod
    def _log_tail(pod_dir: Path) -> str:
        try:
            text = (pod_dir / SUPERVISOR_LOG).read_text(errors="replace").strip()
        except OSError:
            text = ""
        return text[-2000:] or f"nothing in {pod_dir / SUPERVISOR_LOG}"

    def _reap(self, wait: float = 0.0) -> None:
        if self._popen is None or self._popen.returncode is not None:
            return
        with contextlib.suppress(subprocess.TimeoutExpired):
            self._popen.wait(wait)

    def pidfd(self) -> int | None:
        """A pidfd of the supervisor, readable once it has exited; None if it is gone.

        The caller owns the descriptor and closes it (``loop.add_reader``, ``selectors``).
        """
        if self._popen is not None:
            # Our child: until it is reaped, its pid can name no other process.
            if self._popen.returncode is not None:
                return None
            try:
                return os.pidfd_open(self.supervisor_pid)
            except ProcessLookupError:
                return None
        if not self._this_boot:
            return None
        try:
            fd = os.pidfd_open(self.supervisor_pid)
        except ProcessLookupError:
            return None
        # The pidfd pins one process: checking its start time after opening rules out that
        # the pid now belongs to another one.
        if _sv.start_time(self.supervisor_pid) != self._supervisor_start:
            os.close(fd)
            return None
        return fd

    def _signal_supervisor(self, sig: int) -> bool:
        fd = self.pidfd()
        if fd is None:
            return False
        try:
            signal.pidfd_send_signal(fd, sig)
        except ProcessLookupError:
            return False
        finally:
            os.close(fd)
        return True

    def _kill_pod_group(self) -> None:
        self.settle()
        if self.pid is None and self._pod_start is None:
            # adopted while its supervisor was starting it: the pod's pid is in state.json
            # if it got that far
            state = _sv.read_json(self.pod_dir / _sv.STATE)
            if state is not None and state.get("pid") is not None:
                self.pid, self._pod_start = int(state["pid"]), state.get("pod_start")
        if self.pid is None or not self._this_boot:
            return
        leader = _sv.start_time(self.pid)
        # While any process is in the group (or the session) its id cannot be reused; a
        # live leader with another start time means the pod is gone and the pid belongs to
        # someone else.
        if leader is not None and leader != self._pod_start:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signal.SIGKILL)
        _kill_session(self.pid)

    def _supervisor_alive(self) -> bool:
        if self._popen is not None:
            return self._popen.poll() is None
        return self._this_boot and \
            _sv.start_time(self.supervisor_pid) == self._supervisor_start

    def exit_code(self) -> int | None:
        """None while the pod runs; then its code (minus the signal number if killed).

        Once the supervisor has exited this is one read of exit.json (and the reaping of
        the supervisor, when it is our child): the control plane calls it for every pod.
        """
        if self._code is not None:
            return self._code
        ended = _sv.read_json(self.pod_dir / _sv.EXIT)
        if ended is None:
            if self._supervisor_alive():
                return None
            # It may have written the file between our read and its exit.
            ended = _sv.read_json(self.pod_dir / _sv.EXIT)
        if ended is None:
            self._kill_pod_group()
            ended = {"code": -signal.SIGKILL.value, "finished": time.time(),
                     "signalled": False, "lost": True}
            self._record_end(ended)
        else:
            # The supervisor exits right after writing the file: reap it now rather than
            # leave a zombie behind.
            self._reap(wait=1.0)
        if self._ready_fd is not None:    # a launch(wait=False) that nobody settled
            os.close(self._ready_fd)
            self._ready_fd = None
        self.finished = float(ended["finished"])
        self.signalled = bool(ended.get("signalled", False))
        self.lost = bool(ended.get("lost", False))
        self._code = int(ended["code"])
        return self._code

    def _record_end(self, ended: dict[str, Any]) -> None:
        """Write the end we decided for a pod whose supervisor could not, where it can be.

        Into the space the supervisor reserved. If even that fails (no reserved file and a
        full disk), the answer holds in memory; a restarted control plane decides again
        the same way (the supervisor is still gone).
        """
        try:
            _sv.write_json_in_place(self.pod_dir / _sv.EXIT, ended)
        except OSError as e:
            log.warning("cannot record the end of the pod in %s: %s", self.pod_dir, e)

    def running(self) -> bool:
        return self.exit_code() is None

    def terminate(self) -> None:
        """SIGTERM the pod's group, then SIGKILL it once the grace period has run out.

        Returns at once; the supervisor does the waiting.
        """
        self._signal_supervisor(signal.SIGTERM)

    def kill(self) -> None:
        """SIGKILL the pod's group at once, and wait (briefly) for the end to be recorded.

        The supervisor is asked to kill what is left (descendants that left the group too)
        and to record the end; if it has not within a moment, it is SIGKILLed as well.
        """
        if self._code is not None:
            return
        fd = self.pidfd()
        try:
            if fd is not None:
                # Asked first, so that the supervisor records the end as requested.
                with contextlib.suppress(ProcessLookupError):
                    signal.pidfd_send_signal(fd, _sv.KILL_NOW)
            self._kill_pod_group()
            if fd is not None and not _wait_readable(fd, _KILL_WAIT):
                with contextlib.suppress(ProcessLookupError):
                    signal.pidfd_send_signal(fd, signal.SIGKILL)
                _wait_readable(fd, _KILL_WAIT)
                if _sv.read_json(self.pod_dir / _sv.EXIT) is None:
                    self._record_end({"code": -signal.SIGKILL.value,
                                      "finished": time.time(), "signalled": True})
        finally:
            if fd is not None:
                os.close(fd)
        self.exit_code()
