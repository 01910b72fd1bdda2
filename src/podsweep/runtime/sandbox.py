"""Giving a pod its volumes and its isolation: the command line of podsweep's sandbox.

A pod with ``-v /srv/hpo:/nfs/hpo`` must find its files at ``/nfs/hpo`` even on a machine
with no ``/nfs``, and without podsweep creating ``/nfs`` on the host. :func:`wrap_command`
runs the command under ``podsweep-sandbox`` (``sandbox.c``, built like the supervisor by
:mod:`podsweep.runtime.native`; no outside tool): in a mount namespace of its own, the root
is a tmpfs holding the host's top-level entries, bound as they are, plus the volumes; then
the sandbox execs the command in place. Without :class:`Isolation` nothing else is isolated:
the pod shares the host's pid namespace, network, ``/dev``, ``/proc``, users and
capabilities (with it, see below).

- **Privileges.** Run by root, it needs nothing more. Run by anyone else, it first enters a
  user namespace that maps the user and the group onto themselves: files keep their owner,
  while those of other users (root's included) show as owned by ``nobody``, and setuid
  programs (``sudo``) do not elevate. Where that is refused (a container without
  ``CAP_SYS_ADMIN``, user namespaces disabled), the pod fails with exit code 125 and one
  line in its log that says which namespace and why.
- **Signals and exit codes are the command's own**: the sandbox becomes the command (no
  process stays behind), so a SIGTERM reaches the command at once and the pod's code is the
  command's. Exit codes of the sandbox itself, as for ``env`` and ``docker run``: 125 the
  sandbox could not be made, 126 the command cannot be run, 127 the command or the working
  directory is not there.
- **Nothing is made on the host.** A DST's missing parents are made in the tmpfs root, so a
  missing *top-level* directory (``/nfs``) is fine; a DST that would need a directory
  made inside anything of the host's (``/data/x/y`` where ``/data`` exists and ``/data/x``
  does not, or a nested volume's mount point missing from the outer volume's source) is
  refused, in the pod's log: create it on the host first. ``docker run -v`` would create it.
- ``:ro`` volumes are read-only with everything mounted below their source.
- The top level of ``/`` is read when the pod starts: an entry added to the host's ``/``
  afterwards does not appear in that pod. Everything below it is the live host tree, mounts
  made later included (the pod's mounts are slaves of the host's: nothing flows back).
- What a pod creates at the top level (``/scratch``) lives in the sandbox's tmpfs root, in
  memory, and vanishes with the pod.

**Isolation** (:class:`Isolation`, what the local cluster gives every pod unless ``podsweep
up --no-isolation``): the same sandbox, with or without volumes, also

- hides the control plane's directories (:func:`control_plane_dirs`: its home with the
  database and the admin's credentials, the cache of podsweep's binaries) under an empty
  read-only tmpfs, there and wherever a volume shows them; a volume inside one is refused;
- runs the pod in a pid namespace of its own, with a small init as pid 1 and a fresh
  ``/proc``: the pod sees only its own processes (not the control plane's, whose
  ``/proc/PID/root`` would lead around the hiding), and when its supervisor is SIGKILLed
  every process of the pod dies, daemons that left its session included. The pod's main
  process is then the sandbox, which ends as the command ends (its code or its signal).
- As root, init runs the pod in a user namespace mapping every id onto itself, where the
  hiding mounts are locked (a root pod cannot unmount them).
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ..model import Volume
from .errors import RuntimeSetupError
from .native import cache_dir, native_sandbox

_PROBE_TIMEOUT = 30.0


@dataclass(frozen=True)
class Isolation:
    """What the sandbox does for every pod beyond its volumes: see the module's docstring."""

    hidden: tuple[str, ...]     # absolute directories the pod must not see


def control_plane_dirs(home: Path) -> tuple[str, ...]:
    """The directories a pod must not see: ``home``, podsweep's default data and config
    directories (where another home may be) and the cache of its binaries (which a pod
    could otherwise replace with its own supervisor)."""
    import platformdirs

    dirs = [home, Path(platformdirs.user_data_dir("podsweep")),
            Path(platformdirs.user_config_dir("podsweep")), cache_dir()]
    out: list[str] = []
    for path in dirs:
        text = os.path.realpath(path)
        if text not in out:
            out.append(text)
    return tuple(out)


def hidden_source(volume: Volume, isolation: Isolation, *, holding: bool = False
                  ) -> str | None:
    """The hidden directory ``volume``'s source is or lies in (or, with ``holding``, also
    holds); None if none.

    ``holding`` is for a pod in an image, whose volumes podman mounts as they are: the
    sandbox, which hides these directories inside every volume of a process pod, is not
    there to do it."""
    src = os.path.realpath(volume.src)
    for path in isolation.hidden:
        top = path.rstrip("/") + "/"
        if src == path or src.startswith(top) or (
                holding and top.startswith(src.rstrip("/") + "/")):
            return path
    return None


def probe(isolation: Isolation) -> str | None:
    """None if the sandbox can isolate a pod here; else why not, in one line.

    Runs ``true`` in the sandbox as every pod will be run: a user namespace refused (a
    container, a distribution that restricts them), a missing compiler, say so here.
    """
    try:
        argv = wrap_command(["true"], (), None, isolation)
        result = subprocess.run(argv, capture_output=True, text=True, timeout=_PROBE_TIMEOUT,
                                stdin=subprocess.DEVNULL, env={"PATH": os.defpath})
    except (RuntimeSetupError, OSError, subprocess.TimeoutExpired) as exc:
        return str(exc)
    if result.returncode == 0:
        return None
    lines = result.stderr.strip().splitlines()
    return (lines[-1].removeprefix("podsweep: ") if lines
            else f"the sandbox exited with {result.returncode}")


def wrap_command(command: list[str], volumes: Sequence[Volume], working_dir: str | None,
                 isolation: Isolation | None = None) -> list[str]:
    """``command`` run so that it sees every volume's ``src`` at its ``dst``, isolated.

    With no volumes and no isolation the command comes back unchanged (the caller then
    passes ``working_dir`` as the process's cwd). Else it comes back as the sandbox's
    command line, which also changes into ``working_dir`` (it may lie inside a volume): the
    caller then starts it with no cwd of its own.

    Raises :class:`RuntimeSetupError` if a volume's source is neither a directory nor a
    file, or if the sandbox cannot be built (no C compiler).
    """
    if not volumes and isolation is None:
        return list(command)
    for volume in volumes:
        if not (os.path.isdir(volume.src) or os.path.isfile(volume.src)):
            raise RuntimeSetupError(f"volume {volume}: the source {volume.src} is not a "
                                    f"directory or a file on this machine")
    args = [str(native_sandbox())]
    # A parent is mounted before what is mounted inside it.
    for volume in sorted(volumes, key=lambda v: os.path.normpath(v.dst).count("/")):
        args += ["--ro-bind" if volume.read_only else "--bind", volume.src, volume.dst]
    if isolation is not None:
        for path in isolation.hidden:
            args += ["--hide", path]
        args.append("--pid")
    if working_dir is not None:
        args += ["--chdir", working_dir]
    return [*args, "--", *command]
