"""The local cluster's scheduler: which pods start on which GPUs, and which are preempted.

:mod:`podsweep.scheduler.policy` holds the decision itself, a pure function over a
snapshot of the machine (:func:`decide`), and the fair-share computation it rests on
(:func:`fair_shares`).
"""

from __future__ import annotations

from .policy import (
    Decision,
    JobView,
    PendingPod,
    ProjectView,
    RunningPod,
    Snapshot,
    Start,
    decide,
    fair_shares,
)

__all__ = [
    "Decision",
    "JobView",
    "PendingPod",
    "ProjectView",
    "RunningPod",
    "Snapshot",
    "Start",
    "decide",
    "fair_shares",
]
