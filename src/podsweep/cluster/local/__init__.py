"""The local cluster: pods as processes on this machine, scheduled by podsweep's own policy.

State lives in the :class:`~podsweep.store.Store`; what runs lives in supervisor processes
(:mod:`podsweep.runtime`), one per pod, each in its own session, so nothing depends on the
control plane being their parent. The control plane watches each supervisor through a pidfd
on its event loop: a pod's exit, a submit, a delete or a quota change each trigger a
reconcile at once (coalesced within one loop iteration), never a sleeping poll.

Reconcile: account for the pods that ended, build a :class:`~podsweep.scheduler.Snapshot`
from the store and the in-memory job and pod states, let the pure policy decide, then apply
its decision (preempt, then start). One reconcile is one transaction: its pod ends, job
updates, new pods and events are committed together, and only then are pods signalled and
started, so a crash at any point leaves a store that names every pod that may be running.

After a crash, :meth:`LocalCluster.recover` re-adopts the pods still running and accounts
for those that ended meanwhile from their supervisors' exit files.

A commit that fails because the disk is full (:class:`~podsweep.errors.DiskFull`) is not a
crash: the engine reloads its memory from the store, as it stands without the failed
transaction, pauses, and tries the reconcile again every second until space returns. The
pods that ended meanwhile are accounted for then, once.

The parts, each building on those before it:

- :mod:`.state`: a job as the scheduler needs it in memory, and how many of its pending pods
  a reconcile offers (pure);
- :mod:`.engine`: the memory and the transaction (a batch) every other part works in;
- :mod:`.pods`: a pod's lifecycle, from its record to its end, and a job's end;
- :mod:`.recovery`: memory rebuilt from the store, running pods adopted;
- :mod:`.loop`: the reconcile, which applies the policy's decision;
- :mod:`.cluster`: :class:`LocalCluster`, the Cluster protocol.
"""

from __future__ import annotations

from ..stored import DELETED, PREEMPTED
from .cluster import LocalCluster
from .engine import DISK_FULL_RETRY, JOB_FAILED, LOST, RECONCILE_FAILED
from .loop import job_views, launches
from .pods import PodEnd, pod_end
from .recovery import rebuild_state
from .state import MAX_OFFERED_QUOTA, JobState, offer_limit

__all__ = [
    "DELETED",
    "DISK_FULL_RETRY",
    "JOB_FAILED",
    "LOST",
    "MAX_OFFERED_QUOTA",
    "PREEMPTED",
    "RECONCILE_FAILED",
    "JobState",
    "LocalCluster",
    "PodEnd",
    "job_views",
    "launches",
    "offer_limit",
    "pod_end",
    "rebuild_state",
]
