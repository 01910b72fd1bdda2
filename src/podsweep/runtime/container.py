"""Running a local pod in an OCI container (``submit -i IMAGE``) through podman.

The supervisor's contract does not change (:mod:`podsweep.runtime.supervisor`): the pod's
command is :mod:`~podsweep.runtime.containerpod` (standard library only), which pulls the
image when the engine lacks it (its progress into the pod's log), creates the container
``podsweep-JOBUID-POD`` (:func:`container_name`) from the image with ``--init``, starts it
attached, passes the supervisor's SIGTERM on to the container and removes it once it has
ended. So state.json, exit.json, the log, ``logs -f`` and adoption after a control-plane
restart stay as for any pod, and:

- **Signals.** SIGTERM reaches the command (through the container's init, catatonit); after
  the grace period the supervisor SIGKILLs the pod and every orphan of it, the container's
  monitor (conmon) and init included. The container is then stopped but still stored:
  :func:`remove` clears it before the pod's end is accounted for, so that its index never
  runs while the old container lives. A pod whose supervisor was SIGKILLed is cleaned the
  same way. Nothing of a pod is left in ``podman ps -a`` once its end is recorded.
- **Exit codes** are the container's: the command's own, 125 when the engine failed (or
  the image could not be pulled: then a line in the pod directory's :data:`PULL_MARK`, which
  the control plane reports as ``ImagePullBackOff``), 126 and 127 as for ``docker run``.
- **Environment.** The pod's own variables (``PODSWEEP_*``, ``JOB_COMPLETION_INDEX``,
  ``CUDA_VISIBLE_DEVICES``, the job's ``-e``) go into the container through a file beside
  its pod directory, mode 0600 (``--env-file``: no value is on a command line other users can
  read), and into nothing that runs on the host: the helper and the engine's client run
  with the control plane's allowlisted variables and the engine's own (a job's
  ``LD_PRELOAD`` or ``PATH`` there would run its code, or another engine, outside the
  container). The allowlisted ones (``PATH``, ``HOME``…) do not go in: the image has its own.
- **GPUs.** ``CUDA_VISIBLE_DEVICES`` names the pod's GPUs as for any pod. Where NVIDIA's
  container toolkit has written a CDI specification (``nvidia-ctk cdi generate``), the GPUs'
  devices go into the container too (``--device nvidia.com/gpu=UUID``); the container then
  sees those GPUs only, numbered from 0, and ``CUDA_VISIBLE_DEVICES`` says ``0,1,…``.
- **Resource limits.** podman would give a container its own defaults (a million open
  files), which a control plane without ``CAP_SYS_RESOURCE`` (itself in a container) may not
  set: the pod gets the control plane's own limits, as a process pod inherits them.

Rootless: run by a user other than root, podman runs rootless by itself (it needs
``uidmap`` and ranges in ``/etc/subuid``); nothing here changes.
"""

from __future__ import annotations

import contextlib
import logging
import os
import resource
import shutil
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from ..model import Volume
from . import containerpod

log = logging.getLogger("podsweep.runtime")

ENGINES = ("podman", "docker")
"""The container engines podsweep drives, in the order it looks for them."""

INSTALL = "apt-get install podman"
PULL_FAILED = containerpod.PULL_FAILED
PULL_MARK = containerpod.PULL_MARK
CDI_DIRS = ("/etc/cdi", "/var/run/cdi")
# podman 4 lowers its own RLIMIT_NPROC to 32768 before it starts the runtime, which may
# not raise it again: a container asking for more fails to start ("error setting rlimit")
_MOST_NPROC = 32768
_REMOVE_TIMEOUT = 60.0


def find_engine(path: str | None = None) -> str | None:
    """The container engine on ``path`` (the process's PATH by default), None if none."""
    for name in ENGINES:
        found = shutil.which(name, path=path)
        if found:
            return found
    return None


def container_name(job_uid: str, pod: str) -> str:
    """The container of a pod: derived from the pod alone, so a restarted control plane,
    or a person, finds it again (``podman ps --filter name=podsweep-JOBUID``)."""
    return f"podsweep-{job_uid}-{pod}"


def cdi_gpus() -> bool:
    """Whether a CDI specification of NVIDIA GPUs is installed (the container toolkit's)."""
    for folder in CDI_DIRS:
        with contextlib.suppress(OSError):
            for entry in os.scandir(folder):
                if entry.name.startswith("nvidia") and \
                        entry.name.endswith((".yaml", ".yml", ".json")):
                    return True
    return False


def _limits() -> list[str]:
    out = []
    for name, which, most in (("nofile", resource.RLIMIT_NOFILE, None),
                              ("nproc", resource.RLIMIT_NPROC, _MOST_NPROC)):
        soft, hard = resource.getrlimit(which)
        values = [v for v in (soft, hard, most) if v is not None and v != resource.RLIM_INFINITY]
        if values:
            low = min(values)
            out += ["--ulimit", f"{name}={low}:{low}"]
    return out


def _runtime(engine: str) -> list[str]:
    """runc where podman has it: crun, podman's default where both are installed, cannot
    start a container on a host with cgroups in hybrid mode (v1 and v2 both mounted,
    "cgroups in hybrid mode not supported"), which runc can."""
    if "podman" in os.path.basename(engine) and shutil.which("runc"):
        return ["--runtime", "runc"]
    return []


@dataclass(frozen=True)
class Container:
    """One pod's container: what ``podman run`` is told."""

    engine: str                    # the engine's path
    image: str
    name: str                      # container_name()
    command: Sequence[str]
    volumes: Sequence[Volume] = ()
    working_dir: str | None = None
    env_file: str | None = None    # the variables passed in: write_env_file()
    devices: Sequence[str] = ()    # CDI devices: nvidia.com/gpu=UUID


ENGINE_ENV = ("XDG_RUNTIME_DIR", "XDG_DATA_HOME", "XDG_CONFIG_HOME", "CONTAINERS_CONF",
              "CONTAINERS_STORAGE_CONF", "CONTAINERS_REGISTRIES_CONF", "REGISTRY_AUTH_FILE",
              "DOCKER_HOST", "DOCKER_CONFIG")
"""The control plane's variables that tell its engine where its storage, configuration
and credentials are (rootless podman's among them): the client gets them, the container
does not."""


def container_env(env: Mapping[str, str], base: Mapping[str, str],
                  job_env: Mapping[str, str], gpus: Sequence[int], cdi: bool,
                  engine_env: Mapping[str, str] | None = None,
                  ) -> tuple[dict[str, str], dict[str, str]]:
    """The client's environment, and the variables that go into the container.

    ``env`` is the pod's whole environment, ``base`` the control plane's allowlisted part of
    it: the client gets ``base`` (podman needs PATH) and :data:`ENGINE_ENV` from
    ``engine_env`` (the process's environment by default), never what the job set; the
    container gets the rest of ``env`` and what the job set with ``-e``. With CDI the
    container sees its GPUs numbered from 0.
    """
    source = os.environ if engine_env is None else engine_env
    client = {**base, **{k: source[k] for k in ENGINE_ENV if k in source}}
    inside = {k: v for k, v in env.items() if k not in base or k in job_env}
    if cdi and gpus:
        inside["CUDA_VISIBLE_DEVICES"] = ",".join(str(i) for i in range(len(gpus)))
    return client, inside


def write_env_file(path: Path, variables: Mapping[str, str]) -> None:
    """``variables`` as the engine's ``--env-file`` reads them, one ``NAME=VALUE`` a line,
    readable by the control plane's user only. A value with a line break cannot be written
    so (the job's are refused at submit): ValueError."""
    for name, value in variables.items():
        if "\n" in value or "\r" in value or "=" in name or "\n" in name:
            raise ValueError(f"-e {name}: a value with a line break cannot go into a container")
    text = "".join(f"{name}={value}\n" for name, value in variables.items())
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)


def run_argv(c: Container, pod_dir: Path) -> list[str]:
    """The pod's command line: :mod:`containerpod` with the engine's ``create`` (a pull's
    failure written to ``pod_dir``'s :data:`PULL_MARK`)."""
    create = [c.engine, "create", "--init", "--name", c.name, "--network", "host",
              "--pull", "never", *_runtime(c.engine), *_limits()]
    if c.env_file is not None:
        create += ["--env-file", c.env_file]
    for volume in c.volumes:
        create += ["-v", f"{volume.src}:{volume.dst}" + (":ro" if volume.read_only else "")]
    if c.working_dir is not None:
        create += ["--workdir", c.working_dir]
    for device in c.devices:
        create += ["--device", device]
    # an image whose name began with "-" would be taken for an option: the model refuses
    # one, and the image is the last of the engine's arguments before the command
    create += [c.image, *c.command]
    return [sys.executable, "-I", containerpod.__file__, str(pod_dir / PULL_MARK), c.engine,
            c.image, c.name, "--", *create]


def remove(engine: str, name: str) -> None:
    """Kill and remove the container ``name``, if there is one; wait until it is gone.

    Blocks for the engine's command (a fraction of a second; seconds on a busy machine):
    called only for a pod whose client was killed, the case where the container may
    outlive it.
    """
    # docker's rm knows neither --ignore nor --time (it kills at once, and a missing
    # container is an error it prints)
    podman = "podman" in os.path.basename(engine)
    argv = [engine, "rm", "--force", *(["--ignore", "--time", "0"] if podman else []), name]
    try:
        done = subprocess.run(argv,
                              stdin=subprocess.DEVNULL, capture_output=True, text=True,
                              timeout=_REMOVE_TIMEOUT)
    except (OSError, subprocess.TimeoutExpired) as exc:
        log.warning("could not remove container %s: %s", name, exc)
        return
    if done.returncode != 0 and podman:
        log.warning("could not remove container %s: %s", name, done.stderr.strip())


def pull_failure(pod_dir: Path) -> str | None:
    """Why the pod's image could not be pulled (one line), None if it was not that."""
    try:
        return (pod_dir / PULL_MARK).read_text(errors="replace").strip() or "pull failed"
    except OSError:
        return None
