"""Giving a pod its volumes: the bubblewrap command line that shows ``SRC`` at ``DST``.

A pod with ``-v /srv/hpo:/nfs/hpo`` must find its files at ``/nfs/hpo`` even on a machine
with no ``/nfs``, and without podsweep creating ``/nfs`` on the host. :func:`wrap_command`
runs the command under bubblewrap in a mount namespace of its own whose root is a tmpfs
holding the host's top-level entries, bound as they are, plus the volumes. Nothing else is
isolated: the pod shares the host's pid namespace (the control plane signals its process
group by host pid), network, ``/dev``, ``/proc``, users and capabilities.

Limits worth knowing:

- Only a *top-level* missing directory lives in the sandbox alone. For ``DST=/data/x/y``
  where ``/data`` exists on the host but ``/data/x`` does not, bubblewrap creates the empty
  mount point ``/data/x/y`` on the host (inside ``/data``), as ``docker run -v`` would.
- The top level of ``/`` is read when the pod starts: an entry added to the host's ``/``
  afterwards does not appear in that pod. Everything below it is the live host tree, mounts
  made later included.
- What a pod creates at the top level (``/scratch``) lives in the sandbox's tmpfs root, in
  memory, and vanishes with the pod.
- bubblewrap mounts everything ``nosuid``; setuid programs (``sudo``) do not elevate inside.
  Run by a user other than root, it works through a user namespace, in which files of
  other users (root's included) show as owned by ``nobody``.
- bubblewrap stays the pod's main process and does not forward signals: SIGTERM kills it at
  once, while the command it runs gets the SIGTERM too and keeps running until it ends or
  the grace period runs out. The supervisor therefore waits for the whole process group, and
  a pod so terminated reports bubblewrap's -15; a command killed by a signal makes
  bubblewrap exit with 128 + the signal number.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Sequence

from ..errors import PodsweepError
from ..model import Volume

BWRAP = "bwrap"


class RuntimeSetupError(PodsweepError):
    """This machine cannot run a pod as asked: bubblewrap missing, a volume's source absent."""


def bwrap_available() -> bool:
    return shutil.which(BWRAP) is not None


def _host_root_args(skip: set[str]) -> list[str]:
    """Recreate each top-level entry of the host's ``/`` in the sandbox's fresh root."""
    args: list[str] = []
    for name in sorted(os.listdir("/")):
        path = "/" + name
        if path in skip:
            continue
        if os.path.islink(path):
            args += ["--symlink", os.readlink(path), path]
        elif name == "proc":
            # A bind keeps the host's procfs and whatever is mounted under it; mounting a
            # fresh one without a pid namespace of our own would fail for unprivileged users.
            args += ["--bind", path, path]
        else:
            # --dev-bind keeps device nodes usable wherever they are (not only /dev).
            args += ["--dev-bind", path, path]
    return args


def _missing_parents(dst: str, made: set[str]) -> list[str]:
    """``--dir`` for each missing ancestor of ``dst`` that lives only in the sandbox's root.

    Ancestors below an existing host directory are left to bubblewrap (which then creates
    them on the host: see the module's docstring). Explicit ``--dir`` makes them 0755, where
    bubblewrap's own would be 0700.
    """
    args: list[str] = []
    parts = dst.strip("/").split("/")[:-1]
    path = ""
    for part in parts:
        path += "/" + part
        if os.path.lexists(path) and path not in made:
            break
        if path not in made:
            args += ["--dir", path]
            made.add(path)
    return args


def wrap_command(command: list[str], volumes: Sequence[Volume],
                 working_dir: str | None) -> list[str]:
    """``command`` run so that it sees every volume's ``src`` at its ``dst``.

    With no volumes the command comes back unchanged (the caller then passes ``working_dir``
    as the process's cwd). With volumes it comes back as a bubblewrap command line that also
    changes into ``working_dir``, which may lie inside a volume: the caller then starts it
    with no cwd of its own.

    Raises :class:`RuntimeSetupError` if bubblewrap is not installed or a volume's source
    is neither a directory nor a file.
    """
    if not volumes:
        return list(command)
    bwrap = shutil.which(BWRAP)
    if bwrap is None:
        raise RuntimeSetupError("volumes (-v) need bubblewrap: apt-get install bubblewrap")
    for volume in volumes:
        if not (os.path.isdir(volume.src) or os.path.isfile(volume.src)):
            raise RuntimeSetupError(f"volume {volume}: the source {volume.src} is not a "
                                    f"directory or a file on this machine")
    targets = {os.path.normpath(v.dst) for v in volumes}
    args = [bwrap, "--tmpfs", "/", *_host_root_args(targets)]
    made: set[str] = set()
    # A parent is mounted before what is mounted inside it.
    for volume in sorted(volumes, key=lambda v: v.dst.count("/")):
        dst = os.path.normpath(volume.dst)
        args += _missing_parents(dst, made)
        args += ["--ro-bind" if volume.read_only else "--bind", volume.src, dst]
        made.add(dst)
    if working_dir is not None:
        args += ["--chdir", working_dir]
    return [*args, "--", *command]
