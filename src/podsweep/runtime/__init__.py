"""podsweep.runtime — running the local cluster's pods as processes on this machine.

- :mod:`~podsweep.runtime.gpus`: the GPUs there are to hand out (NVML, or virtual ones),
  and whether CUDA MPS runs to enforce the shares of fractional pods.
- :mod:`~podsweep.runtime.sandbox`: the command line that gives a pod its volumes, through
  podsweep's own sandbox (``sandbox.c``, built like the native supervisor).
- :mod:`~podsweep.runtime.process`: :class:`PodProcess`, the control plane's handle on one
  pod: launched under a supervisor, watched through a pidfd, signalled as a process group,
  and adopted again after the control plane restarts.
- :mod:`~podsweep.runtime.spawn`: :class:`PodLaunch`, what starting a pod takes, and the
  starting of its supervisor (posix_spawned or forked).
- :mod:`~podsweep.runtime.supervisor`: the per-pod supervisor process itself (standard
  library only); ``supervisor.c`` is the same in C.
- :mod:`~podsweep.runtime.native`: builds the C programs on first use, into a cache.

Linux only: it relies on process groups, ``/proc`` and pidfds.
"""

from __future__ import annotations

from .errors import RuntimeSetupError
from .gpus import GPU, discover_gpus, mps_pipe_directory, virtual_gpus
from .native import native_supervisor
from .process import PodProcess
from .sandbox import wrap_command
from .spawn import PodLaunch

__all__ = [
    "GPU",
    "PodLaunch",
    "PodProcess",
    "RuntimeSetupError",
    "discover_gpus",
    "mps_pipe_directory",
    "native_supervisor",
    "virtual_gpus",
    "wrap_command",
]
