"""Where pods run, behind one protocol (:class:`Cluster`); the local cluster is the default.

The control plane reads which cluster from ``<home>/config.json`` (``podsweep up --cluster``)
and opens it here. Engines other than the local one are imported only when chosen: their
client libraries are optional extras.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from ..errors import UsageError
from ..store import Store
from .base import (
    BlockingViews,
    Cluster,
    ClusterInfo,
    EventInfo,
    JobDetail,
    JobInfo,
    PodInfo,
    ProjectInfo,
    run_view,
)


class Engine(Protocol):
    """An engine's class: ``open`` makes the Cluster the control plane drives.

    The registry's loaders return the classes typed as this, so mypy checks each engine's
    ``open`` and, through its return type, the engine itself against :class:`Cluster`.
    """

    def open(self, home: Path, store: Store, loop: asyncio.AbstractEventLoop,
             settings: dict[str, Any]) -> Cluster: ...


def _local() -> Engine:
    from .local import LocalCluster
    return LocalCluster


def _slurm() -> Engine:
    from .slurm import SlurmCluster
    return SlurmCluster


def _kubernetes() -> Engine:
    from .kubernetes import KubernetesCluster
    return KubernetesCluster


ENGINES: dict[str, Callable[[], Engine]] = {
    "local": _local,
    "slurm": _slurm,
    "kubernetes": _kubernetes,
}
"""``podsweep up --cluster NAME``: a loader per engine, which imports it only when chosen.

Its names are :data:`podsweep.model.CLUSTER_NAMES`, in its order (a test keeps them equal):
the CLI reads them there, without importing this package."""


def open_cluster(home: Path, store: Store, loop: asyncio.AbstractEventLoop,
                 settings: dict[str, Any]) -> Cluster:
    """The cluster ``settings["cluster"]`` names (``local`` when it names none)."""
    kind = settings.get("cluster") or "local"
    if kind not in ENGINES:
        raise UsageError(f"unknown cluster {kind!r} (one of: {', '.join(ENGINES)})")
    return ENGINES[kind]().open(home, store, loop, settings)


__all__ = [
    "ENGINES",
    "BlockingViews",
    "Cluster",
    "ClusterInfo",
    "Engine",
    "EventInfo",
    "JobDetail",
    "JobInfo",
    "PodInfo",
    "ProjectInfo",
    "open_cluster",
    "run_view",
]
