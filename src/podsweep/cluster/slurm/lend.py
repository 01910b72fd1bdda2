"""The lending decision: which waiting tasks go to the borrow QOS, and which go back.

A task that waits on its project's quota (reason ``QOSGrpGRES`` or ``QOSGrpCpuLimit``) while
the GPUs and CPUs it needs are idle is lent them: it moves to the shared borrow QOS in the
borrow partition, which every project's QOS preempts. A borrowed task that waits again (Slurm
preempted it) goes back to its project's QOS once the project has room.

A pure function of one poll's records (:func:`lend`): no Slurm command, no store, no clock.
The engine turns each :class:`Move` into ``scontrol update JobId=.. QOS=.. Partition=..``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from .parse import QUOTA_REASONS, RUNNING_STATES, STARTING_REASONS, Node, Task


@dataclass(frozen=True)
class Quota:
    """A project's quotas, by its QOS (a CPU quota of 0: no CPU limit)."""

    qos: str
    gpus: int
    cpus: int


@dataclass(frozen=True)
class ArrayJob:
    """A job podsweep runs as a Slurm array: its project's QOS, what each task asks for,
    its parallelism and its place in submit order."""

    array_id: int
    qos: str
    gpus: int
    cpus: int
    parallelism: int
    seq: int


@dataclass(frozen=True)
class Move:
    """Move ``task`` (a task's job id, or ``<array>_<index>``) of ``array_id`` to ``qos`` in
    ``partition``."""

    array_id: int
    task: str
    qos: str
    partition: str | None


def has_room(quota: Quota, gpus: int, cpus: int, job: ArrayJob) -> bool:
    """Whether one more task of ``job`` fits its project's quotas, beside the ``gpus``
    and ``cpus`` its tasks in the project's QOS hold. A project with no CPU quota has
    no CPU limit for its GPU tasks (their GPU quota bounds them) and no room at all
    for GPU-less ones: they only borrow (see :func:`~.accounts.grp_tres`)."""
    if gpus + job.gpus > quota.gpus:
        return False
    if quota.cpus > 0:
        return cpus + job.cpus <= quota.cpus
    return job.gpus > 0


def lend(tasks: Sequence[Task], nodes: Sequence[Node], quotas: Sequence[Quota],
         jobs: Sequence[ArrayJob], borrow_qos: str, partition: str | None,
         borrow_partition: str | None) -> list[Move]:
    """Lend idle GPUs and CPUs to tasks waiting on their quota; give back the quota's
    room. ``tasks``: every record of one ``squeue --json``; ``nodes``: Slurm's nodes then;
    ``jobs``: podsweep's arrays that are not being deleted. The moves in the order to make
    them: first the borrowed tasks going back, then the loans, jobs in submit order."""
    ours = {q.qos: q for q in quotas}
    by_id = {j.array_id: j for j in jobs}
    by_array: dict[int, list[Task]] = {}
    for task in tasks:
        by_array.setdefault(task.array_id or task.job_id, []).append(task)
    moves: list[Move] = []
    # GPUs and CPUs held within each project's quota
    in_quota: dict[str, tuple[int, int]] = {}
    for task in tasks:
        if task.state in RUNNING_STATES and task.qos in ours:
            g, c = in_quota.get(task.qos, (0, 0))
            in_quota[task.qos] = (g + task.gpus_each, c + task.cpus_each)
    # a borrowed task waiting again goes back once its project has room
    for task in tasks:
        job = by_id.get(task.array_id)
        if job is None or task.qos != borrow_qos or task.state != "PENDING" \
                or task.index is None:      # a whole array submitted to borrow stays
            continue
        quota = ours.get(job.qos)
        g, c = in_quota.get(job.qos, (0, 0))
        if quota is not None and has_room(quota, g, c, job):
            in_quota[job.qos] = (g + job.gpus, c + job.cpus)
            moves.append(Move(job.array_id, str(task.job_id), job.qos, partition))
    running: dict[int, int] = {}     # array -> tasks running or lent
    for task in tasks:
        if task.state in RUNNING_STATES or \
                (task.state == "PENDING" and task.qos == borrow_qos):
            running[task.array_id] = running.get(task.array_id, 0) + 1
    # GPUs holding shards (gres/shard) of running tasks: Slurm counts them in no node's
    # gres/gpu, yet gives none of them to a task of whole GPUs
    sharded: dict[str, set[int]] = {}
    for task in tasks:
        if task.state in RUNNING_STATES and task.gpus and not task.gpus_each:
            sharded.setdefault(task.node, set()).update(task.gpus)
    # idle GPUs and CPUs: free on a usable node, less what waiting tasks will take anyway
    usable = [n for n in nodes if n.usable]
    free = max((n.gpus - n.used - len(sharded.get(n.name, ())) for n in usable), default=0)
    free_cpus = max((n.cpus - n.cpus_used for n in usable), default=0)
    for task in tasks:
        if task.state != "PENDING":
            continue
        if task.reason in STARTING_REASONS or task.qos == borrow_qos:
            count = max(1, len(task.rest))
            if task.throttle:
                count = min(count, max(0, task.throttle - running.get(task.array_id, 0)))
            free -= task.gpus_each * count
            free_cpus -= task.cpus_each * count
    for job in sorted(jobs, key=lambda j: j.seq):
        array_id, gpus, cpus = job.array_id, job.gpus, job.cpus
        if free < gpus or free_cpus < cpus:
            continue
        waiting = [t for t in by_array.get(array_id, [])
                   if t.state == "PENDING" and t.reason in QUOTA_REASONS
                   and t.qos == job.qos]
        indexes = sorted(i for t in waiting for i in ((t.index,) if t.index is not None
                                                     else t.rest))
        for index in indexes:
            if free < gpus or free_cpus < cpus or \
                    running.get(array_id, 0) >= job.parallelism:
                break
            moves.append(Move(array_id, f"{array_id}_{index}", borrow_qos, borrow_partition))
            free -= gpus
            free_cpus -= cpus
            running[array_id] = running.get(array_id, 0) + 1
    return moves
