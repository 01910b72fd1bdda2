"""The local cluster's scheduler: which pods start on which GPUs, and which are preempted.

:mod:`podsweep.scheduler.policy` holds the decision itself, a pure function over a
snapshot of the machine (:func:`decide`); :mod:`._fairshare` the fair-share computation it
rests on (:func:`fair_shares`); :mod:`._placement` where pods sit on the GPUs, whole or in
fractions.
"""

from __future__ import annotations

from ._fairshare import fair_shares
from .policy import (
    Decision,
    JobView,
    PendingPod,
    ProjectView,
    RunningPod,
    Snapshot,
    Start,
    decide,
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
