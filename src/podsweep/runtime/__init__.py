"""podsweep.runtime — running the local cluster's pods as processes on this machine.

- :mod:`~podsweep.runtime.gpus`: the GPUs there are to hand out (NVML, or virtual ones).
- :mod:`~podsweep.runtime.sandbox`: the bubblewrap command line that gives a pod its volumes.
- :mod:`~podsweep.runtime.process`: :class:`PodProcess`, the control plane's handle on one
  pod: launched under a supervisor, watched through a pidfd, signalled as a process group,
  and adopted again after the control plane restarts.
- :mod:`~podsweep.runtime.supervisor`: the per-pod supervisor process itself (standard
  library only); ``supervisor.c`` is the same in C, built on first use by
  :mod:`~podsweep.runtime.native`.

Linux only: it relies on process groups, ``/proc`` and pidfds.
"""

from __future__ import annotations

from .gpus import GPU, discover_gpus, virtual_gpus
from .native import native_supervisor
from .process import PodLaunch, PodProcess
from .sandbox import RuntimeSetupError, bwrap_available, wrap_command

__all__ = [
    "GPU",
    "PodLaunch",
    "PodProcess",
    "RuntimeSetupError",
    "bwrap_available",
    "discover_gpus",
    "native_supervisor",
    "virtual_gpus",
    "wrap_command",
]
