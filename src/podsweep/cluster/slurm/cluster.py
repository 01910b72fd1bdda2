"""The Slurm engine itself: start-up and recovery, submit (sbatch as a task), delete and the
views; :mod:`.accounts`, :mod:`.sync` and :mod:`.commands` hold the rest of its methods."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import pwd
import re
import shutil
import time
import uuid
from pathlib import Path
from typing import Any

from ...errors import Conflict, NotFound, SlurmError, UsageError
from ...model import JobSpec, JobStatus, PodStatus, pod_name
from ...runtime import wrap_command
from ...store import Job, Pod, Store
from ..base import ClusterInfo, JobInfo, ProjectInfo
from ..stored import DELETED, StoredJobs
from .parse import (
    LIVE_STATES,
    RUNNING_STATES,
    array_in_sacct,
    array_in_squeue,
    read_accounts,
    shards_per_gpu,
)
from .script import array_name, batch_script, host_path, sbatch_command, shards_of
from .sync import SlurmSync

log = logging.getLogger("podsweep.cluster.slurm")

DELETE_TIMEOUT = 120.0       # scancel to no task running: Slurm's KillWait and then some
DELETE_ROUNDS = 3            # scancels before delete gives up (6 minutes)
PREFIX_RE = re.compile(r"^[a-z0-9-]*$")


class SlurmCluster(SlurmSync, StoredJobs):
    """Pods as Slurm array tasks; see the package's docstring."""

    kind = "slurm"

    def __init__(self, home: Path, store: Store, loop: asyncio.AbstractEventLoop,
                 prefix: str = "", partition: str | None = None,
                 borrow_partition: str = "borrow") -> None:
        if not PREFIX_RE.match(prefix):
            raise UsageError(f"slurm_prefix {prefix!r}: use lower-case letters, digits and '-'")
        self.home = home
        self.store = store
        self.loop = loop
        self.prefix = prefix
        self.user = pwd.getpwuid(os.getuid()).pw_name
        self.jobs_dir = home / "slurm"
        self.jobs_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.borrow_qos = f"ps_{prefix}borrow"
        partitions = self._partitions()
        default = next((p for p, is_default in partitions.items() if is_default), None)
        self.partition = partition or default
        if self.partition is None or self.partition not in partitions:
            raise SlurmError(f"Slurm has no partition {self.partition!r} (it has: "
                             f"{', '.join(partitions) or 'none'})")
        self.borrow_partition = borrow_partition
        if borrow_partition not in partitions:
            log.warning("no Slurm partition %r: idle GPUs are not lent beyond quotas",
                        borrow_partition)
            self.borrow_partition = None
        self._tasks = {}     # array id -> its records, last poll
        self._all = []                  # every record of the last poll
        self._nodes = []
        self._deleting = set()            # job uids
        # held around a requeue or a move and around delete's scancel: a change the poller
        # decided on lands before the scancel, or sees the delete and is not made
        self._changing = asyncio.Lock()
        self._wake = asyncio.Event()
        self._ready = {}     # project -> its Slurm set-up
        self._accounting = asyncio.Semaphore(4)     # sacctmgr at once: slurmdbd is one
        self._launches: dict[str, asyncio.Task[None]] = {}  # job uid -> its sbatch
        self._borrow_ready = loop.create_future()
        self._borrow_ready.set_result(None)
        self.max_array = self._max_array_size()
        # read here, before serving, then kept fresh by the poller and by each project's
        # set-up: submit, info and create_project run no Slurm command on the event loop
        self._nodes = self._read_nodes()
        self._accounts = read_accounts(self._sacctmgr(
            "show", "account", "format=account,description"))
        self._foreign = {}          # project -> why Slurm's account is not ours
        self._poller: asyncio.Task[None] | None = None
        self.polls = 0

    @classmethod
    def open(cls, home: Path, store: Store, loop: asyncio.AbstractEventLoop,
             settings: dict[str, Any]) -> SlurmCluster:
        """Settings: ``slurm_prefix`` (of accounts and QOS), ``slurm_partition``,
        ``slurm_borrow_partition`` (default ``borrow``)."""
        if shutil.which("sbatch") is None:
            raise SlurmError("the slurm cluster needs Slurm's commands (sbatch, squeue, "
                             "sacctmgr) on PATH; scripts/slurm-up.sh sets up a single-node "
                             "Slurm")
        return cls(home, store, loop, str(settings.get("slurm_prefix") or ""),
                   settings.get("slurm_partition"),
                   str(settings.get("slurm_borrow_partition") or "borrow"))

    # ------------------------------------------------------------ start-up, shutdown

    def recover(self) -> None:
        """Make sure Slurm has every project's account and QOS, then start the poller (which
        catches up with what ran while the control plane was down)."""
        self._borrow_ready = self.loop.create_task(self._ensure_borrow_qos())
        for project in self.store.projects():
            self._set_up(project.name, self._ensure_project(project.name, project.gpus,
                                                            project.cpus))
        for job in self.store.jobs(include_done=False):
            if job.engine_ref is None:
                # the control plane stopped before it stored what sbatch answered, if sbatch
                # ran at all: Slurm is asked for the array by its name (delete waits for it)
                self._launches[job.uid] = self.loop.create_task(self._adopt(job))
        self._poller = self.loop.create_task(self._poll_forever())

    async def _find_array(self, job: Job) -> str | None:
        """The id of the array sbatch made for the job, if it made one."""
        name = array_name(job.name, job.uid)
        found = array_in_squeue(await self._arun("squeue", "--json"), name)
        if found is not None:
            return found
        since = time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(job.created - 3600))
        out = await self._arun("sacct", "-X", "-n", "-P", f"--name={name}", "-S", since,
                               f"--account={self.account(job.project)}",
                               "--format=JobID,JobName", check=False)
        return array_in_sacct(out, name)

    async def _adopt(self, job: Job) -> None:
        """A job stored before a crash with no array: take the array if Slurm has one."""
        try:
            try:
                array_id = await self._find_array(job)
            except SlurmError as exc:
                array_id = None
                log.warning("looking for the array of job %s in Slurm failed: %s", job.uid, exc)
            if array_id is not None:
                self._took(job, array_id)
                return
            message = "the control plane stopped before Slurm took the job; submit it again"
            with self.store.transaction():
                self.store.update_job(job.uid, status=JobStatus.FAILED, finished=time.time(),
                                      message=message)
                self.store.event(job.uid, JobStatus.FAILED.value, message)
        finally:
            self._launches.pop(job.uid, None)

    def _took(self, job: Job, array_id: str) -> None:
        """Slurm has the job as array ``array_id``."""
        with self.store.transaction():
            self.store.update_job(job.uid, engine_ref=array_id)
            self.store.event(job.uid, "Slurm", f"array job {array_id} in account "
                             f"{self.account(job.project)}, QOS "
                             f"{self._home(job.project, job.spec)[0]}")
        self._wake.set()

    def shutdown(self) -> None:
        """Stop polling; the tasks go on in Slurm (the next control plane catches up)."""
        if self._poller is not None:
            self._poller.cancel()

    # ------------------------------------------------------------ the Cluster protocol

    def info(self) -> ClusterInfo:
        holders: dict[tuple[str, int], tuple[str, str]] = {}
        names = self._pod_names()
        for task in self._all:
            if task.state in RUNNING_STATES and task.job_id in names:
                for g in task.gpus:
                    holders[(task.node, g)] = names[task.job_id]
        gpus: list[dict[str, Any]] = []
        for node in self._nodes:
            for g in range(node.gpus):
                pod, project = holders.get((node.name, g), (None, None))
                gpus.append({"index": len(gpus), "name": f"{node.name} gpu{g}",
                             "pod": pod, "project": project})
        return ClusterInfo(self.kind, gpus)

    def _pod_names(self) -> dict[int, tuple[str, str]]:
        """Task job id -> the name of its running pod and its project, for the GPU table."""
        out: dict[int, tuple[str, str]] = {}
        for job in self.store.jobs(include_done=False):
            if job.engine_ref is None:
                continue
            for task in self._tasks.get(int(job.engine_ref), []):
                if task.index is not None:
                    out[task.job_id] = (pod_name(job.name, task.index, task.restarts),
                                        job.project)
        return out

    def create_project(self, name: str, gpus: int, cpus: int = 0) -> ProjectInfo:
        self._check_new_project(name, gpus, cpus)
        foreign = self._foreign_account(name)      # as last read; set-up reads it again
        if foreign is not None:
            raise Conflict(foreign)
        self.store.create_project(name, gpus, cpus)
        self._set_up(name, self._ensure_project(name, gpus, cpus))
        return self._project_infos([name])[0]

    def set_quota(self, name: str, gpus: int | None = None, cpus: int | None = None) -> None:
        self._check_quota(name, gpus, cpus)
        if gpus is None and cpus is None:
            return
        self.store.set_quota(name, gpus, cpus)
        self._set_up(name, self._set_limit(name))

    def projects(self) -> list[ProjectInfo]:
        return self._project_infos([p.name for p in self.store.projects()])

    def _project_infos(self, names: list[str]) -> list[ProjectInfo]:
        jobs = self.store.jobs(names, include_done=False)
        infos = {j.uid: self._job_info(j) for j in jobs}
        cpu = {j.uid: j.spec.cpu for j in jobs}
        out = []
        for name in names:
            project = self.store.project(name)
            if project is None:
                raise NotFound(f"project {name!r} not found")
            mine = [i for i in infos.values() if i.project == name]
            cpus = sum(i.running * cpu[i.uid] for i in mine)
            out.append(ProjectInfo(name, project.gpus, sum(i.allocated for i in mine),
                                   sum(i.running for i in mine), sum(i.pending for i in mine),
                                   float(project.gpus), cpus=project.cpus,
                                   allocated_cpus=cpus, cpu_share=float(project.cpus)))
        return out

    def submit(self, spec: JobSpec, user: str) -> JobInfo:
        self._check_project_of(spec)
        if spec.image:
            # pyxis (srun --container-image) or Apptainer on the nodes would run it; podsweep
            # does not pass an image to either yet
            raise UsageError(f"-i {spec.image}: this Slurm cluster runs pods as plain "
                             f"processes on its nodes (an image needs pyxis or Apptainer, "
                             f"which podsweep does not drive yet); drop -i")
        nodes = self._nodes
        shards_of(spec, shards_per_gpu(nodes))      # a share: a whole number of shards
        gpus = math.ceil(spec.gpus)
        most = max((n.gpus for n in nodes), default=0)
        if gpus > most:
            raise UsageError(f"-g {spec.gpus}: no Slurm node has more than {most} GPU(s)")
        cpus = max((n.cpus for n in nodes), default=0)
        if spec.cpu > cpus:      # Slurm would take the job and keep it pending for ever
            raise UsageError(f"--cpu {spec.cpu}: no Slurm node has more than {cpus} CPUs")
        self._check_volumes(spec, "slurm")
        # The sandbox's binary is in this user's cache (~/.cache/podsweep): the task runs as
        # the same user and sees the same file systems on a single node; a multi-node
        # cluster would need it where every node finds it (see the module's docstring).
        argv = wrap_command(spec.command, spec.volumes, spec.working_dir)
        self._check_name_free(spec, host_path(spec) if spec.working_dir else None)
        if spec.completions > self.max_array:
            raise UsageError(f"--completions {spec.completions}: this Slurm runs arrays of at "
                             f"most {self.max_array} tasks (MaxArraySize)")
        uid = uuid.uuid4().hex[:8]
        job_dir = self.jobs_dir / uid
        job_dir.mkdir(mode=0o700, parents=True)
        script = job_dir / "job.sh"
        script.write_text(batch_script(spec, uid, job_dir, argv))
        job = self.store.insert_job(uid, spec, user)
        self._launches[uid] = self.loop.create_task(self._launch(job, script))
        return self._job_info(job)


    async def _launch(self, job: Job, script: Path) -> None:
        """sbatch the job once its project is set up in Slurm (sbatch itself: ~10 ms)."""
        spec = job.spec
        try:
            ready = self._ready.get(spec.project)
            if ready is not None:
                with contextlib.suppress(Exception):
                    await ready
            foreign = self._foreign.get(spec.project)
            if foreign is not None:
                self._refused(job, foreign)
                return
            qos, partition = self._home(spec.project, spec)
            try:        # the nodes are read again meanwhile: they may cut GPUs otherwise
                shards = shards_of(spec, shards_per_gpu(self._nodes))
            except UsageError as exc:
                self._refused(job, str(exc))
                return
            sbatch = sbatch_command(spec, script, name=array_name(job.name, job.uid),
                                    account=self.account(spec.project), qos=qos,
                                    partition=partition, shards=shards)
            try:
                out = await self._arun(*sbatch)
            except SlurmError as exc:
                # sbatch may have timed out after slurmctld took the job: look for it
                found = None
                with contextlib.suppress(SlurmError):
                    found = await self._find_array(job)
                if found is not None:
                    self._took(job, found)
                    return
                self._refused(job, str(exc))
                return
            self._took(job, out.strip().split(";")[0])
        finally:
            self._launches.pop(job.uid, None)

    def _refused(self, job: Job, why: str) -> None:
        """End a job that Slurm would not take (or that podsweep may not give it)."""
        message = f"Slurm refused the job: {why}"
        with self.store.transaction():
            self.store.update_job(job.uid, status=JobStatus.FAILED, finished=time.time(),
                                  message=message)
            self.store.event(job.uid, JobStatus.FAILED.value, message)


    async def delete(self, project: str, name: str) -> None:
        """Cancel the job's array and end the job Deleted; returns once Slurm runs no task
        of it (the contract of every engine's delete). Slurm failing on the way (a lost
        scancel, a squeue that times out) makes it try again, never give up and leave the
        job running."""
        job = self._find(project, name)
        self._deleting.add(job.uid)
        try:
            launch = self._launches.get(job.uid)
            if launch is not None:      # let sbatch finish, then cancel what it made
                with contextlib.suppress(Exception):    # a failed sbatch made nothing
                    await asyncio.shield(launch)
                job = self.store.job(job.uid) or job
            if job.engine_ref is not None:
                await self._cancel(job.engine_ref)
            now = time.time()
            for pod in self.store.pods(job.uid):
                if pod.status.active:
                    self.store.update_pod(pod, status=PodStatus.DELETED, reason=DELETED,
                                          finished=now)
            self.store.update_job(job.uid, status=JobStatus.DELETED, finished=now)
        finally:
            self._deleting.discard(job.uid)
        self._wake.set()

    async def _cancel(self, array_id: str) -> None:
        """scancel the array, again each DELETE_TIMEOUT, until squeue shows no task of it
        alive: scancel may be lost (it is not checked: a task already ended is no error).
        After DELETE_ROUNDS rounds it gives up with a SlurmError (the delete contract: never
        return while a task runs, and do not keep the caller waiting for ever)."""
        for _ in range(DELETE_ROUNDS):
            async with self._changing:
                await self._arun("scancel", array_id, check=False)
            deadline = time.monotonic() + DELETE_TIMEOUT
            while time.monotonic() < deadline:
                try:
                    tasks = await self._array(array_id)
                except SlurmError as exc:       # slurmctld busy: ask again
                    log.warning("deleting array job %s: %s", array_id, exc)
                else:
                    if not any(t.state in LIVE_STATES for t in tasks):
                        return
                await asyncio.sleep(0.2)
            log.warning("Slurm still runs tasks of array job %s %.0f s after scancel; "
                        "cancelling it again", array_id, DELETE_TIMEOUT)
        raise SlurmError(f"Slurm still runs tasks of array job {array_id} "
                         f"{DELETE_ROUNDS * DELETE_TIMEOUT:.0f} s after it was cancelled "
                         f"{DELETE_ROUNDS} times (is slurmctld up?); the job is left as it "
                         f"is: delete it again")

    # ------------------------------------------------------------ views

    def _pod_counts(self, job: Job) -> tuple[int, int]:
        if job.status.done:
            return 0, 0
        spec = job.spec
        running = sum(1 for p in self.store.pods(job.uid) if p.status.active)
        pending = max(0, min(spec.parallelism - running,
                             spec.completions - job.succeeded - running))
        return running, pending

    def _log_path(self, pod: Pod) -> Path:
        return Path(pod.dir) / f"{pod.name}.log"
