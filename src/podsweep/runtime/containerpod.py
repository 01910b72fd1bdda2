"""A container pod's main process: pull the image if need be, create, start, stop, remove.

Run by path as the pod's command (``python -I containerpod.py MARK ENGINE IMAGE NAME --
CREATE...``, where ``CREATE`` is the engine's ``create`` command line), so that
its output is the pod's log and the supervisor's contract holds unchanged:

1. If the engine lacks ``IMAGE``, pull it, its progress into the log. If the pull fails,
   its last line goes into the file ``MARK`` and the pod exits :data:`PULL_FAILED`; the
   control plane reports it (``ImagePullBackOff``).
2. Create the container ``NAME``, then start it attached (``start --attach``), the client
   in a process group of its own.
3. On SIGTERM (or SIGINT) from the supervisor, send SIGTERM to the container itself
   (``kill``), again until it takes it if the container is still starting. Not to the
   client: a client signalled while it creates or starts a container exits 0 and leaves the
   container behind (podman 4.3, measured), which would read as a pod that succeeded.
   A SIGTERM that comes before the container starts ends the pod as killed by it.
4. Once the client returns, remove the container (``rm --force``) and exit with its code:
   when the control plane hears of the pod's end, nothing of it is left.

After the grace period the supervisor SIGKILLs this process, then every orphan of the pod
(the client, the container's monitor, the container's init); the control plane removes
what the engine still stores (:func:`podsweep.runtime.container.remove`).

Standard library only: it runs with ``-I``, outside podsweep's package, on Python 3.9+.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys

PULL_MARK = "pull-failed"
PULL_FAILED = 125    # as podman's and docker's own failures: the command never ran
_STOP = {signal.SIGTERM, signal.SIGINT}
_RETRY = 0.2         # seconds between two tries to signal a container still starting


def _engine(engine: str, *args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([engine, *args], stdin=subprocess.DEVNULL,
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _stopped() -> bool:
    return bool(set(signal.sigpending()) & _STOP)


def _die_by(sig: int) -> None:
    """End as killed by ``sig``, as a pod without this step would have."""
    if sig == signal.SIGKILL:       # its disposition cannot be set (EINVAL), nor blocked
        os.kill(os.getpid(), sig)
    signal.signal(sig, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {sig})
    os.kill(os.getpid(), sig)


def pull(mark: str, engine: str, image: str) -> bool:
    """The image is there, pulled if it was not (False: the pull failed, said in ``mark``)."""
    # docker has no "image exists"; "image inspect" answers the same with more output
    ask = "exists" if "podman" in os.path.basename(engine) else "inspect"
    if _engine(engine, "image", ask, image).returncode == 0:
        return True
    if _stopped():                  # stopped while asked: no pull to wait for
        _die_by(signal.SIGTERM)
    print(f"podsweep: pulling image {image}", flush=True)
    # the pull may be stopped like the pod: SIGTERM reaches it with the pod's group
    pulling = subprocess.Popen([engine, "pull", image], stdin=subprocess.DEVNULL,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               preexec_fn=_unblock)
    assert pulling.stdout is not None
    last = ""
    for raw in pulling.stdout:      # the progress, line by line, into the pod's log
        line = raw.decode(errors="replace").rstrip()
        print(line, flush=True)
        last = line.strip() or last
    if pulling.wait() == 0:
        return True
    if _stopped():
        _die_by(signal.SIGTERM)
    why = last[len("Error: "):] if last.startswith("Error: ") else last
    with open(mark, "w") as f:
        f.write(f"cannot pull image {image}: {why or 'the pull failed'}\n")
    print(f"podsweep: cannot pull image {image}", flush=True)
    return False


def _unblock() -> None:
    """In a child, before exec: the signals this process blocks, unblocked."""
    signal.pthread_sigmask(signal.SIG_UNBLOCK, _STOP | {signal.SIGCHLD})


def _own_group() -> None:
    """In the client, before exec: out of the pod's process group, signals unblocked."""
    os.setpgid(0, 0)
    _unblock()


def run(engine: str, name: str, create: list[str]) -> int:
    """Create, start and remove the container; its exit code, or minus SIGTERM if the
    pod was stopped before the container started."""
    made = subprocess.run(create, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
    if made.returncode != 0:
        return made.returncode
    if _stopped():
        _engine(engine, "rm", "--force", name)
        return -signal.SIGTERM
    client = subprocess.Popen([engine, "start", "--attach", name], stdin=subprocess.DEVNULL,
                              preexec_fn=_own_group)
    retry = False       # a stop the container has not taken yet
    while True:
        got = signal.sigtimedwait(_STOP | {signal.SIGCHLD}, _RETRY)
        if client.poll() is not None:
            break
        if (got is not None and got.si_signo in _STOP) or (retry and got is None):
            # until the engine takes it: a container still starting cannot be signalled
            retry = _engine(engine, "kill", "--signal", "TERM", name).returncode != 0
    code = client.returncode
    _engine(engine, "rm", "--force", name)
    return code


def main(argv: list[str]) -> int:
    mark, engine, image, name, sep, *create = argv
    if sep != "--" or not create:
        print("usage: containerpod.py MARK ENGINE IMAGE NAME -- CREATE...", file=sys.stderr)
        return 2
    # taken when this process is ready for them (sigtimedwait), never by a handler
    signal.pthread_sigmask(signal.SIG_BLOCK, _STOP | {signal.SIGCHLD})
    if not pull(mark, engine, image):
        return PULL_FAILED
    if _stopped():
        _die_by(signal.SIGTERM)
    code = run(engine, name, create)
    if code < 0:
        _die_by(-code)
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
