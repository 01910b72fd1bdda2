"""Where pods run, behind one protocol (:class:`Cluster`); the local cluster is the default.

The control plane reads which cluster from ``<home>/config.json`` (``podsweep up --cluster``)
and opens it here. Engines other than the local one are imported only when chosen: their
client libraries are optional extras.
"""

from __future__ import annotations

import asyncio
import importlib
from pathlib import Path
from typing import Any

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

ENGINES = {
    "local": "podsweep.cluster.local:LocalCluster",
    "slurm": "podsweep.cluster.slurm:SlurmCluster",
    "kubernetes": "podsweep.cluster.kubernetes:KubernetesCluster",
}
"""``podsweep up --cluster NAME``: each class has ``open(home, store, loop, settings)``."""


def open_cluster(home: Path, store: Store, loop: asyncio.AbstractEventLoop,
                 settings: dict[str, Any]) -> Cluster:
    """The cluster ``settings["cluster"]`` names (``local`` when it names none)."""
    kind = settings.get("cluster") or "local"
    if kind not in ENGINES:
        raise UsageError(f"unknown cluster {kind!r} (one of: {', '.join(ENGINES)})")
    module, _, name = ENGINES[kind].partition(":")
    engine = getattr(importlib.import_module(module), name)
    cluster: Cluster = engine.open(home, store, loop, settings)
    return cluster


__all__ = ["ENGINES", "BlockingViews", "Cluster", "ClusterInfo", "EventInfo", "JobDetail",
           "JobInfo", "PodInfo", "ProjectInfo", "open_cluster", "run_view"]
