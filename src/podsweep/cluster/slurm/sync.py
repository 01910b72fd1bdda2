"""The poller: Slurm is the truth for what runs, and this brings the store up to it.

Each second, or when woken, it reads ``squeue --json`` (a few milliseconds) and the nodes,
records pods and their ends in the store (the same tables as the local cluster, so views and
logs read the store), retries failed tasks up to the job's backoff limit (``scontrol
requeue``), ends jobs, and makes the lending decision's moves (:mod:`.lend`). Arrays Slurm's
controller has already forgotten (the control plane was down longer than ``MinJobAge``) are
read from ``sacct``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import replace
from fractions import Fraction
from pathlib import Path

from ...model import JobStatus, PodStatus, format_gpus, pod_name
from ...store import Job, Pod
from ..stored import PREEMPTED, exit_reason, failed_message, succeeded_message
from .accounts import SlurmAccounts
from .lend import ArrayJob, Quota, lend
from .parse import (
    LIVE_STATES,
    REQUEUED_STATES,
    STARTED_STATES,
    Task,
    parse_nodes,
    tasks_from_sacct,
    tasks_from_squeue,
)

log = logging.getLogger("podsweep.cluster.slurm")

POLL_INTERVAL = 1.0          # seconds between two looks at squeue when nothing wakes the poller


class SlurmSync(SlurmAccounts):
    """Slurm's state into the store, one poll at a time."""

    jobs_dir: Path
    polls: int
    _tasks: dict[int, list[Task]]               # array id -> its records, last poll
    _all: list[Task]                            # every record of the last poll
    _deleting: set[str]                         # job uids
    # held around a requeue or a move and around delete's scancel: a change the poller
    # decided on lands before the scancel, or sees the delete and is not made
    _changing: asyncio.Lock

    async def _poll_forever(self) -> None:
        while True:
            try:
                await self._poll()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("polling Slurm failed; trying again")
            self._wake.clear()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._wake.wait(), POLL_INTERVAL)

    async def poll(self) -> None:
        """One look at Slurm now (tests and the benchmark call it)."""
        await self._poll()

    async def _poll(self) -> None:
        began = time.time()
        squeue = await self._arun("squeue", "--json")
        self._nodes = parse_nodes(await self._arun("scontrol", "-o", "show", "node"))
        self._all = tasks_from_squeue(squeue)
        by_array: dict[int, list[Task]] = {}
        for task in self._all:
            by_array.setdefault(task.array_id or task.job_id, []).append(task)
        self._tasks = by_array
        self.polls += 1
        for job in self.store.jobs(include_done=False):
            if job.engine_ref is None or job.uid in self._deleting:
                continue
            tasks = by_array.get(int(job.engine_ref))
            if tasks is None:
                if job.created > began - 5:
                    continue    # submitted while squeue answered, or not yet listed
                tasks = await self._from_sacct(job.engine_ref)
            await self._sync(job, tasks)
        if self.borrow_partition is not None:
            await self._lend()

    # ------------------------------------------------------------ tasks to pods

    async def _sync(self, job: Job, tasks: list[Task]) -> None:
        """Record the array's tasks as pods; retry failed ones; end the job when it is."""
        pods: dict[tuple[int, int], Pod] = {(p.index, p.attempt): p
                                            for p in self.store.pods(job.uid)}
        spec = job.spec
        job_dir = self.jobs_dir / job.uid
        retried = False
        for task in sorted((t for t in tasks if t.index is not None), key=lambda t: t.start):
            if job.uid in self._deleting:
                return      # delete() ends what is left (this loop awaits Slurm commands)
            index = task.index
            assert index is not None
            # an earlier attempt still marked active ended by a requeue: a preemption,
            # unless podsweep requeued it itself after a failure (then it is already ended)
            for (i, attempt), old in list(pods.items()):
                if i == index and attempt < task.restarts and old.status.active:
                    pods[(i, attempt)] = self._end_pod(job, old, PodStatus.PREEMPTED, None,
                                                       PREEMPTED)
            if task.state == "PENDING":
                continue
            key = (index, task.restarts)
            pod = pods.get(key)
            if pod is None:
                # while a requeue stops the last attempt (COMPLETING, REQUEUED), squeue
                # already shows the next attempt's number: that attempt has not started
                ran = task.state in STARTED_STATES or task.accounting or (
                    task.state not in LIVE_STATES and task.state != "CANCELLED")
                if not ran:
                    continue
                name = pod_name(spec.name, index, task.restarts)
                gpus = task.gpus or self._recorded_gpus(job_dir / f"{name}.gpus")
                where = f" on GPU {','.join(map(str, gpus))}" if gpus else ""
                if gpus and isinstance(spec.gpus, Fraction):
                    where += f" ({format_gpus(spec.gpus)} of it)"     # as the local cluster
                borrowed = " (borrowed beyond the quota)" if task.qos == self.borrow_qos \
                    else ""
                with self.store.transaction():      # the pod and its event, or neither
                    share = spec.gpus if isinstance(spec.gpus, Fraction) else None
                    pod = self.store.insert_pod(job.uid, index, task.restarts, name, gpus,
                                                str(job_dir), share)
                    if 0 < task.start <= pod.created:      # Slurm's start, whole seconds
                        self.store.update_pod(pod, created=task.start)
                        pod = replace(pod, created=task.start)
                    self.store.event(job.uid, "Started", f"pod {name}{where}{borrowed}")
                    if job.status is JobStatus.PENDING:
                        self.store.update_job(job.uid, status=JobStatus.RUNNING)
                pods[key] = pod
            if not pod.status.active:
                continue
            if task.state in REQUEUED_STATES:
                self._end_pod(job, pod, PodStatus.PREEMPTED, None, PREEMPTED)
            elif task.state == "COMPLETED":
                self._end_pod(job, pod, PodStatus.SUCCEEDED, task.exit_code or 0, None,
                              task.end)
            elif task.state == "CANCELLED":
                self._end_pod(job, pod, PodStatus.FAILED, task.exit_code,
                              "cancelled in Slurm", task.end)
            elif task.state not in LIVE_STATES:
                retried = await self._failed(job, pod, task) or retried
        if not retried:     # else the snapshot still shows the retried task as ended
            self._settle(job, tasks)

    @staticmethod
    def _recorded_gpus(path: Path) -> tuple[int, ...]:
        """What a task wrote of its CUDA_VISIBLE_DEVICES (squeue forgets an ended task's)."""
        try:
            text = path.read_text()
        except OSError:
            return ()
        return tuple(int(g) for g in text.split(",") if g.strip().isdigit())

    def _end_pod(self, job: Job, pod: Pod, status: PodStatus, code: int | None,
                 reason: str | None, when: float = 0.0, failed: int | None = None) -> Pod:
        """Record a pod's end, the job's counter it moves (``failed``: the new count of
        failed pods) and its event in one commit: a crash leaves all or none of them."""
        now = when if 0 < when <= time.time() else time.time()   # Slurm's end, if known
        with self.store.transaction():
            self.store.update_pod(pod, status=status, exit_code=code, reason=reason,
                                  finished=now)
            if failed is not None:
                self.store.update_job(job.uid, failed=failed)
            if status is PodStatus.SUCCEEDED:
                # counted from the pods themselves: an index that succeeded counts once
                succeeded = len({p.index for p in self.store.pods(job.uid)
                                 if p.status is PodStatus.SUCCEEDED})
                self.store.update_job(job.uid, succeeded=succeeded)
                self.store.event(job.uid, "Succeeded", f"pod {pod.name}")
            elif status is PodStatus.PREEMPTED:
                self.store.event(job.uid, PREEMPTED,
                                 f"pod {pod.name}: it borrowed GPUs or CPUs beyond its "
                                 f"project's quota and Slurm requeued it for a project "
                                 f"within its quota; index {pod.index} will run again")
            elif reason is not None:
                self.store.event(job.uid, "Failed", f"pod {pod.name}: {reason}")
        return replace(pod, status=status, exit_code=code, reason=reason, finished=now)

    async def _failed(self, job: Job, pod: Pod, task: Task) -> bool:
        """Count a failed task; run its index again unless the backoff limit is spent
        (then cancel the rest). True if it runs again.

        Slurm is told first, then the store in one commit: a crash in between leaves the
        pod active, and the next poll sees either the same failed task (and does it all
        again) or, after a requeue, its next attempt (and records this one as preempted)."""
        fresh = self.store.job(job.uid) or job
        failed = fresh.failed + 1
        again = failed <= job.spec.backoff_limit
        async with self._changing:
            if job.uid in self._deleting:
                return True     # delete() cancelled the array: no retry, it ends the pods
            if again:
                # the index runs again, as the next attempt (Slurm counts it as a restart)
                await self._arun("scontrol", "requeue", str(task.job_id), check=False)
            else:
                await self._arun("scancel", str(job.engine_ref), check=False)
        reason = exit_reason(task.exit_code) if task.exit_code is not None else task.state
        self._end_pod(job, pod, PodStatus.FAILED, task.exit_code, f"{reason} ({task.state})",
                      task.end, failed=failed)
        return again

    def _settle(self, job: Job, tasks: list[Task]) -> None:
        """End the job once it has succeeded, or once nothing of it is left in Slurm."""
        fresh = self.store.job(job.uid) or job
        if fresh.status.done:
            return
        spec = fresh.spec
        if fresh.succeeded >= spec.completions:
            message = succeeded_message(spec)
            self.store.update_job(job.uid, status=JobStatus.SUCCEEDED, finished=time.time(),
                                  message=message)
            self.store.event(job.uid, JobStatus.SUCCEEDED.value, message)
        elif tasks and not any(t.state in LIVE_STATES for t in tasks) and \
                not any(p.status.active for p in self.store.pods(job.uid)):
            if fresh.failed > spec.backoff_limit:
                message = failed_message(fresh)
            else:
                message = f"{fresh.succeeded} of {spec.completions} pods succeeded; Slurm " \
                          f"has nothing of it left to run"
            self.store.update_job(job.uid, status=JobStatus.FAILED, finished=time.time(),
                                  message=message)
            self.store.event(job.uid, JobStatus.FAILED.value, message)

    async def _from_sacct(self, array_id: str) -> list[Task]:
        """An array Slurm's controller has forgotten, from accounting: each index's records
        in order, the n-th being attempt n."""
        out = await self._arun("sacct", "-D", "-X", "-P", "-n", "-j", array_id,
                               "--format=JobIDRaw,JobID,State,ExitCode,Start,End,QOS,"
                               "Partition", check=False)
        return tasks_from_sacct(out, array_id, time.time())

    async def _array(self, array_id: str) -> list[Task]:
        """The records squeue has now of one array."""
        return [t for t in tasks_from_squeue(await self._arun("squeue", "--json"))
                if str(t.array_id) == array_id or str(t.job_id) == array_id]

    # ------------------------------------------------------------ lending idle GPUs

    async def _lend(self) -> None:
        """Make the lending decision's moves (see :mod:`.lend`) on the last poll's records."""
        quotas = [Quota(self.qos(p.name), p.gpus, p.cpus) for p in self.store.projects()]
        jobs = {int(j.engine_ref): j for j in self.store.jobs(include_done=False)
                if j.engine_ref is not None and j.uid not in self._deleting}
        # a job of shards of a GPU is not lent: the lending counts whole GPUs (docs/slurm.md)
        arrays = [ArrayJob(array_id, self.qos(j.project), int(j.spec.gpus), j.spec.cpu,
                           j.spec.parallelism, j.seq) for array_id, j in jobs.items()
                  if not isinstance(j.spec.gpus, Fraction)]
        for move in lend(self._all, self._nodes, quotas, arrays, self.borrow_qos,
                         self.partition, self.borrow_partition):
            await self._move(jobs[move.array_id], move.task, move.qos, move.partition)

    async def _move(self, job: Job, task: int | str, qos: str, partition: str | None) -> None:
        async with self._changing:
            if job.uid in self._deleting:
                return      # a task moved after delete's scancel could start again
            log.info("task %s to QOS %s", task, qos)
            await self._arun("scontrol", "update", f"JobId={task}", f"QOS={qos}",
                             f"Partition={partition}", check=False)
