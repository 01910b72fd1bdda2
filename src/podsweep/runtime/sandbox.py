"""Giving a pod its volumes: the sandbox's command line, which shows ``SRC`` at ``DST``.

A pod with ``-v /srv/hpo:/nfs/hpo`` must find its files at ``/nfs/hpo`` even on a machine
with no ``/nfs``, and without podsweep creating ``/nfs`` on the host. :func:`wrap_command`
runs the command under ``podsweep-sandbox`` (``sandbox.c``, built like the supervisor by
:mod:`podsweep.runtime.native`; no outside tool): in a mount namespace of its own, the root
is a tmpfs holding the host's top-level entries, bound as they are, plus the volumes; then
the sandbox execs the command in place. Nothing else is isolated: the pod shares the host's
pid namespace (the control plane signals its process group by host pid), network, ``/dev``,
``/proc``, users and capabilities.

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
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from ..model import Volume
from .errors import RuntimeSetupError
from .native import native_sandbox


def wrap_command(command: list[str], volumes: Sequence[Volume],
                 working_dir: str | None) -> list[str]:
    """``command`` run so that it sees every volume's ``src`` at its ``dst``.

    With no volumes the command comes back unchanged (the caller then passes ``working_dir``
    as the process's cwd). With volumes it comes back as the sandbox's command line, which
    also changes into ``working_dir`` (it may lie inside a volume): the caller then starts
    it with no cwd of its own.

    Raises :class:`RuntimeSetupError` if a volume's source is neither a directory nor a
    file, or if the sandbox cannot be built (no C compiler).
    """
    if not volumes:
        return list(command)
    for volume in volumes:
        if not (os.path.isdir(volume.src) or os.path.isfile(volume.src)):
            raise RuntimeSetupError(f"volume {volume}: the source {volume.src} is not a "
                                    f"directory or a file on this machine")
    args = [str(native_sandbox())]
    # A parent is mounted before what is mounted inside it.
    for volume in sorted(volumes, key=lambda v: os.path.normpath(v.dst).count("/")):
        args += ["--ro-bind" if volume.read_only else "--bind", volume.src, volume.dst]
    if working_dir is not None:
        args += ["--chdir", working_dir]
    return [*args, "--", *command]
