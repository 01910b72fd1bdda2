"""The Slurm cluster: a job is one Slurm job array, a pod one array task, a project an account.

Mapping (``podsweep up --cluster slurm``):

- A **project** is a Slurm account (``<prefix><project>``) with a QOS of its own,
  ``ps-<prefix><project>``, that carries its quotas: ``GrpTRES=gres/gpu=<quota>,cpu=<CPU
  quota>`` (a CPU quota of 0 is no CPU limit; see :meth:`SlurmCluster._grp_tres`). The quota
  sits on the QOS, not on the account, because an account's limit binds every job of the
  account whatever its QOS, which would forbid borrowing (below).
- A **job** is ``sbatch --array=0-(C-1)%P --gres=gpu:G --account=... --qos=ps-...`` of a
  small batch script that sets the ``PODSWEEP_*`` variables from ``SLURM_ARRAY_TASK_ID`` and
  ``SLURM_RESTART_COUNT``, sends the task's output to ``<home>/slurm/<uid>/<pod>.log`` and
  execs the command (under podsweep's sandbox when it has volumes, as on the local cluster).
- A **pod** is an array task's attempt: ``<job>-<index>-<attempt>``, the attempt being
  Slurm's restart count.
- **Borrowing**: a task that waits on its project's quota (reason ``QOSGrpGRES`` or
  ``QOSGrpCpuLimit``) while the GPUs and CPUs it needs are idle is lent them: podsweep
  moves it to the shared QOS ``ps_<prefix>borrow`` (no limit, ``PreemptMode=requeue``) in
  the borrow partition (the same nodes). Every project's QOS lists the borrow QOS in
  ``Preempt``, so when a project within its quota needs the GPUs or CPUs Slurm itself
  preempts the borrowed task: SIGTERM, then requeue; it runs again as the next attempt and
  the HPO library hands it its preempted trial. A borrowed task that waits again once its
  project has room goes back to the project's QOS. The borrow partition is needed because
  Slurm's scheduler skips all other tasks of an array in the partition where one of its
  tasks could not start: the over-quota tasks would hold the lent one back.

Slurm is the truth for what runs. A poller on the event loop reads ``squeue --json`` (a
few milliseconds) each second or when woken, records pods and their ends in the store (the
same tables as the local cluster, so views and logs read the store), retries failed
tasks up to the job's backoff limit (``scontrol requeue``), ends jobs, and lends GPUs and
CPUs. Tasks that Slurm has already forgotten (the control plane was down longer than
``MinJobAge``) are read from ``sacct``.

Nothing slow runs on the event loop's time: ``sacctmgr`` changes (0.3-0.7 s each) are made
in the background after ``create_project`` / ``set_quota`` have stored theirs, and a job's
``sbatch`` runs as a task that first waits for its project to be set up; a job Slurm
refuses ends Failed with Slurm's message.

Limits: the grace period of a preempted or deleted pod is Slurm's ``KillWait`` (one setting
for the cluster), not ``--grace-period``; volumes are set up on the node that runs the task
with the same sandbox command line as here, so a multi-node cluster needs the same paths
everywhere, the sandbox's binary (in the submitting user's cache) included.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import pwd
import re
import shlex
import shutil
import subprocess
import time
import uuid
from collections.abc import Coroutine
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from ..errors import Conflict, NotFound, SlurmError, UsageError
from ..model import JobSpec, JobStatus, PodStatus, check_count, check_name, pod_name
from ..runtime import wrap_command
from ..store import Job, Pod, Project, Store
from .base import ClusterInfo, JobInfo, ProjectInfo
from .podenv import base_env
from .stored import StoredJobs

log = logging.getLogger("podsweep.cluster.slurm")

POLL_INTERVAL = 1.0          # seconds between two looks at squeue when nothing wakes the poller
COMMAND_TIMEOUT = 30.0       # a Slurm command that takes longer has failed
DELETE_TIMEOUT = 120.0       # scancel to no task running: Slurm's KillWait and then some
ASSOCIATION_TIMEOUT = 30.0   # sacctmgr's change to slurmctld knowing it (about a second)
PRIVATE_ENV = {"PODSWEEP_TOKEN", "PODSWEEP_URL"}
# waiting on its project's quota of GPUs or of CPUs: what lending may help
QUOTA_REASONS = {"QOSGrpGRES", "AssocGrpGRES", "QOSGrpCpuLimit", "AssocGrpCpuLimit"}
STARTING_REASONS = {"None", "Priority", "Resources"}    # will run as soon as GPUs are free
LIVE_STATES = {"PENDING", "RUNNING", "COMPLETING", "CONFIGURING", "SUSPENDED", "REQUEUED",
               "REQUEUE_FED", "REQUEUE_HOLD", "RESIZING", "SIGNALING", "STAGE_OUT",
               "PREEMPTED", "RESV_DEL_HOLD", "SPECIAL_EXIT", "STOPPED"}
RUNNING_STATES = {"RUNNING", "COMPLETING", "CONFIGURING", "SIGNALING", "STAGE_OUT"}
STARTED_STATES = {"RUNNING", "CONFIGURING", "SIGNALING", "STAGE_OUT", "SUSPENDED"}
REQUEUED_STATES = {"PREEMPTED", "REQUEUED", "REQUEUE_FED", "REQUEUE_HOLD"}
PREEMPTED, DELETED = "Preempted", "Deleted"
PREFIX_RE = re.compile(r"^[a-z0-9-]*$")


@dataclass(frozen=True)
class Task:
    """One record of ``squeue --json`` (or ``sacct``): a task, or an array's pending rest."""

    job_id: int
    array_id: int
    index: int | None            # None: the array's record of its tasks not yet started
    rest: tuple[int, ...]        # that record's indexes
    state: str
    reason: str
    qos: str
    partition: str
    restarts: int
    exit_code: int | None
    gpus: tuple[int, ...]        # GPU indexes on its node, while it runs
    node: str
    gpus_each: int               # GPUs it asks for
    throttle: int                # the array's %P (0: none)
    start: float
    end: float
    accounting: bool = False     # read from sacct: its attempt numbers are its own
    cpus_each: int = 1           # CPUs it asks for (--cpus-per-task)


@dataclass(frozen=True)
class Node:
    name: str
    cpus: int
    gpus: int
    used: int
    usable: bool
    cpus_used: int = 0


def _gpus_of(tres: str) -> int:
    """GPUs per node from ``gres:gpu:2`` / ``gres/gpu:2`` / ``gpu:tesla:2`` (0 if none)."""
    total = 0
    for part in (tres or "").split(","):
        fields = part.replace("/", ":").split(":")
        if "gpu" in fields and fields[-1].isdigit():
            total += int(fields[-1])
    return total


def _indexes(text: str) -> tuple[int, ...]:
    """``0-3,7`` (``%N`` throttle dropped) as ``(0, 1, 2, 3, 7)``."""
    out: list[int] = []
    for part in text.split("%")[0].split(","):
        if not part:
            continue
        first, _, last = part.partition("-")
        out.extend(range(int(first), int(last or first) + 1))
    return tuple(out)


def _gpu_indexes(detail: list[str]) -> tuple[int, ...]:
    """``['gpu:1(IDX:0-1,3)']`` as ``(0, 1, 3)``."""
    out: list[int] = []
    for item in detail:
        match = re.search(r"IDX:([0-9,\-]+)", item)
        if match:
            out.extend(_indexes(match.group(1)))
    return tuple(out)


def _exit_code(raw: Any) -> int | None:
    """A wait status as the shell reports it: the exit code, or 128 + the signal."""
    if not isinstance(raw, int):
        return None
    return raw >> 8 if raw & 0x7F == 0 else 128 + (raw & 0x7F)


def _number(raw: Any, default: int) -> int:
    """A count from ``squeue --json``: a plain number (22.05) or ``{"set", "number"}``."""
    if isinstance(raw, dict):
        raw = raw.get("number") if raw.get("set", True) else None
    return raw if isinstance(raw, int) and raw > 0 else default


def _task_from_json(job: dict[str, Any]) -> Task:
    index = job.get("array_task_id")
    rest = _indexes(job.get("array_task_string") or "") if index is None else ()
    state = str(job.get("job_state") or "")
    return Task(int(job["job_id"]), int(job.get("array_job_id") or 0),
                index if isinstance(index, int) else None, rest, state,
                str(job.get("state_reason") or ""), str(job.get("qos") or ""),
                str(job.get("partition") or ""), int(job.get("restart_cnt") or 0),
                _exit_code(job.get("exit_code")), _gpu_indexes(job.get("gres_detail") or []),
                str(job.get("nodes") or ""), _gpus_of(str(job.get("tres_per_node") or "")),
                int(job.get("array_max_tasks") or 0), float(job.get("start_time") or 0),
                float(job.get("end_time") or 0), cpus_each=_number(job.get("cpus_per_task"), 1))


class SlurmCluster(StoredJobs):
    """Pods as Slurm array tasks; see the module docstring."""

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
        self.borrow_partition: str | None = borrow_partition
        if borrow_partition not in partitions:
            log.warning("no Slurm partition %r: idle GPUs are not lent beyond quotas",
                        borrow_partition)
            self.borrow_partition = None
        self._tasks: dict[int, list[Task]] = {}     # array id -> its records, last poll
        self._all: list[Task] = []                  # every record of the last poll
        self._nodes: list[Node] = []
        self._deleting: set[str] = set()            # job uids
        # held around a requeue or a move and around delete's scancel: a change the poller
        # decided on lands before the scancel, or sees the delete and is not made
        self._changing = asyncio.Lock()
        self._wake = asyncio.Event()
        self._ready: dict[str, asyncio.Task[None]] = {}     # project -> its Slurm set-up
        self._accounting = asyncio.Semaphore(4)     # sacctmgr at once: slurmdbd is one
        self._launches: dict[str, asyncio.Task[None]] = {}  # job uid -> its sbatch
        self._borrow_ready: asyncio.Future[None] = loop.create_future()
        self._borrow_ready.set_result(None)
        self.max_array = self._max_array_size()
        # read here, before serving, then kept fresh by the poller and by each project's
        # set-up: submit, info and create_project run no Slurm command on the event loop
        self._nodes = self._read_nodes()
        self._accounts = self._read_accounts(self._sacctmgr(
            "show", "account", "format=account,description"))
        self._foreign: dict[str, str] = {}          # project -> why Slurm's account is not ours
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

    # ------------------------------------------------------------ Slurm commands

    @staticmethod
    def _env() -> dict[str, str]:
        return {k: v for k, v in os.environ.items()
                if k not in PRIVATE_ENV and not k.startswith("SLURM_")}

    def _run(self, *argv: str, ok: tuple[str, ...] = ()) -> str:
        """Run a Slurm command (short: the controller answers in milliseconds). A failure
        whose output contains one of ``ok`` counts as success (sacctmgr's "Nothing new")."""
        try:
            proc = subprocess.run(argv, capture_output=True, text=True, env=self._env(),
                                  timeout=COMMAND_TIMEOUT, stdin=subprocess.DEVNULL)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise SlurmError(f"{argv[0]}: {exc}") from exc
        out = proc.stdout + proc.stderr
        if proc.returncode != 0 and not any(s in out for s in ok):
            detail = " ".join(out.split()) or f"exit code {proc.returncode}"
            raise SlurmError(f"{' '.join(argv[:3])}: {detail}")
        return proc.stdout

    async def _arun(self, *argv: str, check: bool = True, ok: tuple[str, ...] = ()) -> str:
        """A Slurm command on the event loop without blocking it."""
        proc = await asyncio.create_subprocess_exec(
            *argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, env=self._env())
        try:
            out, err = await asyncio.wait_for(proc.communicate(), COMMAND_TIMEOUT)
        except asyncio.TimeoutError:
            proc.kill()
            await proc.wait()
            raise SlurmError(f"{argv[0]}: no answer in {COMMAND_TIMEOUT:.0f} s") from None
        text = out.decode() + err.decode()
        if check and proc.returncode != 0 and not any(s in text for s in ok):
            raise SlurmError(f"{' '.join(argv[:3])}: {' '.join(err.decode().split())}")
        return out.decode()

    def _partitions(self) -> dict[str, bool]:
        names = self._run("sinfo", "-h", "-o", "%P").split()
        return {n.rstrip("*"): n.endswith("*") for n in names}

    def _sacctmgr(self, *args: str) -> str:
        """A short query of Slurm's accounting (about 0.2 s here)."""
        return self._run("sacctmgr", "-i", "-n", "-P", *args)

    async def _asacctmgr(self, *args: str) -> str:
        """A change to Slurm's accounting: 0.3-0.7 s each here, so never on the loop's time."""
        async with self._accounting:
            return await self._arun("sacctmgr", "-i", "-n", "-P", *args,
                                    ok=("Nothing new added", "Nothing modified",
                                        "Nothing deleted"))

    # ------------------------------------------------------------ names in Slurm

    def account(self, project: str) -> str:
        return f"{self.prefix}{project}"

    def qos(self, project: str) -> str:
        return f"ps-{self.prefix}{project}"

    async def _ensure_borrow_qos(self) -> None:
        if self.borrow_qos not in (await self._asacctmgr("show", "qos", "format=name")).split():
            await self._asacctmgr("add", "qos", self.borrow_qos)
        await self._asacctmgr("modify", "qos", "where", f"name={self.borrow_qos}", "set",
                              "Priority=0", "PreemptMode=requeue")

    @staticmethod
    def _read_accounts(text: str) -> dict[str, str]:
        """``sacctmgr show account format=account,description`` as account -> description."""
        rows = (line.partition("|") for line in text.splitlines())
        return {account: description for account, bar, description in rows if bar}

    def _foreign_account(self, name: str) -> str | None:
        """Why the project's Slurm account is not podsweep's to use, or None."""
        account = self.account(name)
        found = self._accounts.get(account)
        if found is not None and not found.startswith("podsweep project"):
            return (f"Slurm already has an account {account!r} that is not a podsweep "
                    f"project; choose another name")
        return None

    @staticmethod
    def _grp_tres(gpus: int, cpus: int) -> str:
        """The project QOS's limit. A CPU quota of 0 is no CPU limit (-1), not ``cpu=0``,
        which would hold back every task of the project, GPU tasks within their GPU quota
        included: a GPU-less job of such a project is submitted to the borrow QOS instead
        (it runs on idle CPUs only), see :meth:`_home`."""
        return f"GrpTRES=gres/gpu={gpus},cpu={cpus if cpus > 0 else -1}"

    def _home(self, project: str, spec: JobSpec) -> tuple[str, str]:
        """The QOS and partition a job is submitted to: its project's, or the borrow QOS
        for a GPU-less job of a project with no CPU quota (it may only borrow CPUs)."""
        stored = self.store.project(project)
        if spec.gpus == 0 and stored is not None and stored.cpus == 0:
            return self.borrow_qos, self.borrow_partition or str(self.partition)
        return self.qos(project), str(self.partition)

    async def _ensure_project(self, name: str, gpus: int, cpus: int) -> None:
        """The project's QOS, account and this user's association, as they should be."""
        await self._borrow_ready
        qos, account = self.qos(name), self.account(name)
        self._accounts.update(self._read_accounts(await self._asacctmgr(
            "show", "account", "format=account,description")))
        foreign = self._foreign_account(name)
        if foreign is not None:     # made by someone else since: never taken over
            self._foreign[name] = foreign
            raise SlurmError(foreign)
        self._foreign.pop(name, None)
        if qos not in (await self._asacctmgr("show", "qos", "format=name")).split():
            await self._asacctmgr("add", "qos", qos)
        await self._asacctmgr("modify", "qos", "where", f"name={qos}", "set",
                              self._grp_tres(gpus, cpus), "Priority=10",
                              f"Preempt={self.borrow_qos}")
        if not (await self._asacctmgr("show", "account", account, "format=account")).strip():
            await self._asacctmgr("add", "account", account,
                                  f"Description=podsweep project {name}",
                                  "Organization=podsweep")
        assoc = await self._asacctmgr("show", "assoc", "where", f"account={account}",
                                      f"user={self.user}", "format=user")
        if not assoc.strip():
            await self._asacctmgr("add", "user", self.user, f"Account={account}",
                                  f"QOS={qos},{self.borrow_qos}", f"DefaultQOS={qos}")
        else:
            await self._asacctmgr("modify", "user", "where", f"name={self.user}",
                                  f"account={account}", "set",
                                  f"QOS={qos},{self.borrow_qos}", f"DefaultQOS={qos}")
        await self._association_known(account)

    async def _association_known(self, account: str) -> None:
        """Wait until slurmctld has the user's association with the account: slurmdbd
        passes sacctmgr's changes on asynchronously, and an sbatch before that is refused
        ("Invalid account or account/partition combination specified")."""
        deadline = time.monotonic() + ASSOCIATION_TIMEOUT
        wanted = f"Account={account} UserName={self.user}("
        while wanted not in await self._arun("scontrol", "show", "assoc_mgr",
                                             f"users={self.user}", f"accounts={account}",
                                             "flags=assoc"):
            if time.monotonic() > deadline:
                raise SlurmError(f"slurmctld does not know account {account} for user "
                                 f"{self.user} {ASSOCIATION_TIMEOUT:.0f} s after sacctmgr "
                                 f"added it")
            await asyncio.sleep(0.1)

    def _set_up(self, name: str, work: Coroutine[Any, Any, None]) -> None:
        """Change a project in Slurm in the background; its jobs' sbatch waits for it."""
        before = self._ready.get(name)

        async def after() -> None:
            if before is not None:
                with contextlib.suppress(Exception):
                    await before
            try:
                await work
            except Exception:   # its jobs' sbatch then fails and says why
                log.exception("setting up project %s in Slurm failed", name)
        self._ready[name] = self.loop.create_task(after())

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

    def _array_name(self, job: Job) -> str:
        """The array's name in Slurm: the job's name and uid, to find it by (squeue, sacct)."""
        return f"{job.name}.{job.uid}"

    async def _find_array(self, job: Job) -> str | None:
        """The id of the array sbatch made for the job, if it made one."""
        name = self._array_name(job)
        data = json.loads(await self._arun("squeue", "--json"))
        for record in data.get("jobs", []):
            if record.get("name") == name:
                return str(record.get("array_job_id") or record["job_id"])
        since = time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(job.created - 3600))
        out = await self._arun("sacct", "-X", "-n", "-P", f"--name={name}", "-S", since,
                               f"--account={self.account(job.project)}",
                               "--format=JobID,JobName", check=False)
        for line in out.splitlines():
            job_id, _, found = line.partition("|")
            if found == name and job_id:
                return job_id.split("_")[0]
        return None

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
        check_name("project", name)
        check_count("--gpus", gpus, 0)
        check_count("--cpus", cpus, 0)
        if self.store.project(name) is not None:
            raise Conflict(f"project {name!r} already exists")
        foreign = self._foreign_account(name)      # as last read; set-up reads it again
        if foreign is not None:
            raise Conflict(foreign)
        self.store.create_project(name, gpus, cpus)
        self._set_up(name, self._ensure_project(name, gpus, cpus))
        return self._project_infos([name])[0]

    def set_quota(self, name: str, gpus: int | None = None, cpus: int | None = None) -> None:
        if gpus is not None:
            check_count("--gpus", gpus, 0)
        if cpus is not None:
            check_count("--cpus", cpus, 0)
        if self.store.project(name) is None:
            raise NotFound(f"project {name!r} not found")
        if gpus is None and cpus is None:
            return
        self.store.set_quota(name, gpus, cpus)
        self._set_up(name, self._set_limit(name))

    async def _set_limit(self, name: str) -> None:
        project = self.store.project(name)      # the latest quotas, when this one runs
        if project is None:
            return
        await self._asacctmgr("modify", "qos", "where", f"name={self.qos(name)}", "set",
                              self._grp_tres(project.gpus, project.cpus))
        self._wake.set()

    def project_exists(self, name: str) -> bool:
        return self.store.project(name) is not None

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
        if self.store.project(spec.project) is None:
            raise NotFound(f"project {spec.project!r} not found; an admin creates it with "
                           f"podsweep project create {spec.project} --gpus N")
        if spec.image:
            raise UsageError(f"-i {spec.image}: this Slurm cluster runs pods as plain "
                             f"processes on its nodes; drop -i")
        nodes = self._nodes
        most = max((n.gpus for n in nodes), default=0)
        if spec.gpus > most:
            raise UsageError(f"-g {spec.gpus}: no Slurm node has more than {most} GPU(s)")
        cpus = max((n.cpus for n in nodes), default=0)
        if spec.cpu > cpus:      # Slurm would take the job and keep it pending for ever
            raise UsageError(f"--cpu {spec.cpu}: no Slurm node has more than {cpus} CPUs")
        for volume in spec.volumes:
            volume.require_host("slurm")
            if not os.path.exists(volume.src):
                raise UsageError(f"-v {volume}: {volume.src} does not exist on this machine")
        # The sandbox's binary is in this user's cache (~/.cache/podsweep): the task runs as
        # the same user and sees the same file systems on a single node; a multi-node
        # cluster would need it where every node finds it (see the module's docstring).
        argv = wrap_command(spec.command, spec.volumes, spec.working_dir)
        if spec.working_dir and not os.path.isdir(self._host_path(spec)):
            raise UsageError(f"--working-dir {spec.working_dir} does not exist")
        if self.store.job_by_name(spec.project, spec.name) is not None:
            raise Conflict(f"job {spec.name!r} already exists in project {spec.project!r}; "
                           f"delete it first or choose another name")
        if spec.completions > self.max_array:
            raise UsageError(f"--completions {spec.completions}: this Slurm runs arrays of at "
                             f"most {self.max_array} tasks (MaxArraySize)")
        uid = uuid.uuid4().hex[:8]
        job_dir = self.jobs_dir / uid
        job_dir.mkdir(mode=0o700, parents=True)
        script = job_dir / "job.sh"
        script.write_text(self._script(spec, uid, job_dir, argv))
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
            sbatch = ["sbatch", "--parsable", "--export=NIL",
                      f"--array=0-{spec.completions - 1}%{spec.parallelism}",
                      f"--account={self.account(spec.project)}",
                      f"--qos={qos}", f"--partition={partition}",
                      f"--job-name={self._array_name(job)}", f"--cpus-per-task={spec.cpu}",
                      f"--output={script.parent}/%A_%a.out", "--open-mode=append", "--requeue",
                      f"--chdir={script.parent}"]
            if spec.gpus:
                sbatch.append(f"--gres=gpu:{spec.gpus}")
            try:
                out = await self._arun(*sbatch, str(script))
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

    def _max_array_size(self) -> int:
        """The most tasks an array may have: indexes go up to MaxArraySize less one."""
        for line in self._run("scontrol", "show", "config").splitlines():
            key, _, value = line.partition("=")
            if key.strip() == "MaxArraySize" and value.strip().isdigit():
                return int(value.strip())
        return 1001

    @staticmethod
    def _host_path(spec: JobSpec) -> str:
        """Where the working directory is on this machine: it may lie inside a volume."""
        path = str(spec.working_dir)
        for volume in sorted(spec.volumes, key=lambda v: -len(v.dst)):
            if path == volume.dst or path.startswith(volume.dst.rstrip("/") + "/"):
                return volume.src + path[len(volume.dst):]
        return path

    @staticmethod
    def _script(spec: JobSpec, uid: str, job_dir: Path, argv: list[str]) -> str:
        q = shlex.quote
        lines = ["#!/bin/bash",
                 f"# podsweep job {spec.name} ({uid}) of project {spec.project}: one array "
                 f"task per pod"]
        # sbatch --export=NIL: the task starts from Slurm's own variables (NONE would load
        # the user's login environment on the node), then gets the allowlist of the control
        # plane's (podenv) and the job's, never PODSWEEP_HOME & co. An srun in the pod passes
        # all of that on to its steps (SLURM_EXPORT_ENV would say NIL to it).
        # JobSpec allows plain names only; quoted all the same, as a second line of defence
        lines += [f"export {q(k)}={q(v)}" for k, v in {**base_env(), **spec.env}.items()]
        lines.append("export SLURM_EXPORT_ENV=ALL")
        lines += [f"export PODSWEEP_JOB_NAME={q(spec.name)} PODSWEEP_JOB_UID={uid} "
                  f"PODSWEEP_PROJECT={q(spec.project)}",
                  'export PODSWEEP_POD_INDEX="$SLURM_ARRAY_TASK_ID" '
                  'JOB_COMPLETION_INDEX="$SLURM_ARRAY_TASK_ID"',
                  'export PODSWEEP_POD_ATTEMPT="${SLURM_RESTART_COUNT:-0}"',
                  f'export PODSWEEP_POD_NAME={q(spec.name)}-"$SLURM_ARRAY_TASK_ID-'
                  f'$PODSWEEP_POD_ATTEMPT"',
                  f"export CUDA_DEVICE_ORDER=PCI_BUS_ID OMP_NUM_THREADS={spec.cpu}",
                  # the GPUs Slurm gave it, for a pod that ends before podsweep sees it run
                  f'printf %s "$CUDA_VISIBLE_DEVICES" >{q(str(job_dir))}/"$PODSWEEP_POD_NAME'
                  f'.gpus"',
                  # one log per attempt: the pod's log, as on the local cluster
                  f'exec >>{q(str(job_dir))}/"$PODSWEEP_POD_NAME.log" 2>&1']
        if spec.working_dir and not spec.volumes:
            lines.append(f"cd {q(spec.working_dir)} || exit 1")
        lines.append("exec " + " ".join(q(a) for a in argv))
        return "\n".join(lines) + "\n"

    async def delete(self, project: str, name: str) -> None:
        job = self._find(project, name)
        self._deleting.add(job.uid)
        try:
            launch = self._launches.get(job.uid)
            if launch is not None:      # let sbatch finish, then cancel what it made
                await asyncio.shield(launch)
                job = self.store.job(job.uid) or job
            if job.engine_ref is not None:
                async with self._changing:
                    await self._arun("scancel", job.engine_ref, check=False)
                deadline = time.monotonic() + DELETE_TIMEOUT
                while any(t.state in LIVE_STATES for t in await self._array(job.engine_ref)):
                    if time.monotonic() > deadline:
                        raise SlurmError(f"Slurm still runs tasks of array job "
                                         f"{job.engine_ref} {DELETE_TIMEOUT:.0f} s after "
                                         f"scancel")
                    await asyncio.sleep(0.2)
            now = time.time()
            for pod in self.store.pods(job.uid):
                if pod.status.active:
                    self.store.update_pod(pod, status=PodStatus.DELETED, reason=DELETED,
                                          finished=now)
            self.store.update_job(job.uid, status=JobStatus.DELETED, finished=now)
        finally:
            self._deleting.discard(job.uid)
        self._wake.set()

    async def _array(self, array_id: str) -> list[Task]:
        data = json.loads(await self._arun("squeue", "--json"))
        return [t for t in map(_task_from_json, data.get("jobs", []))
                if str(t.array_id) == array_id or str(t.job_id) == array_id]

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

    # ------------------------------------------------------------ the poller

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
        data = json.loads(await self._arun("squeue", "--json"))
        self._nodes = self._parse_nodes(await self._arun("scontrol", "-o", "show", "node"))
        self._all = [_task_from_json(j) for j in data.get("jobs", [])]
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
                borrowed = " (borrowed beyond the quota)" if task.qos == self.borrow_qos \
                    else ""
                with self.store.transaction():      # the pod and its event, or neither
                    pod = self.store.insert_pod(job.uid, index, task.restarts, name, gpus,
                                                str(job_dir))
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
                self.store.event(job.uid, "Preempted",
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
        reason = f"exit code {task.exit_code}" if task.exit_code is not None else task.state
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
            message = f"{spec.completions} pods succeeded"
            self.store.update_job(job.uid, status=JobStatus.SUCCEEDED, finished=time.time(),
                                  message=message)
            self.store.event(job.uid, JobStatus.SUCCEEDED.value, message)
        elif tasks and not any(t.state in LIVE_STATES for t in tasks) and \
                not any(p.status.active for p in self.store.pods(job.uid)):
            if fresh.failed > spec.backoff_limit:
                message = f"{fresh.failed} pods failed (backoff limit {spec.backoff_limit})"
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
        seen: dict[int, int] = {}
        tasks = []
        for line in out.splitlines():
            fields = line.split("|")
            if len(fields) < 8 or "_" not in fields[1] or "[" in fields[1]:
                continue
            index = int(fields[1].split("_")[1])
            attempt = seen[index] = seen.get(index, -1) + 1
            state = fields[2].split()[0] if fields[2] else ""
            code, _, signal = fields[3].partition(":")
            exit_code = 128 + int(signal) if signal.isdigit() and int(signal) else \
                (int(code) if code.isdigit() else None)
            tasks.append(Task(int(fields[0]), int(array_id), index, (), state, "", fields[6],
                              fields[7], attempt, exit_code, (), "", 0, 0, time.time(),
                              time.time(), accounting=True))
        # a record followed by another of its index was requeued
        last = {t.index: t.restarts for t in tasks}
        return [t if t.restarts == last[t.index] or t.state in REQUEUED_STATES else
                replace(t, state="REQUEUED") for t in tasks]

    # ------------------------------------------------------------ lending idle GPUs

    @staticmethod
    def _parse_nodes(text: str) -> list[Node]:
        nodes = []
        for line in text.splitlines():
            fields = dict(f.split("=", 1) for f in line.split() if "=" in f)
            if "NodeName" not in fields:
                continue
            total = _gpus_of(fields.get("CfgTRES", "").replace("gres/gpu=", "gres/gpu:"))
            used = _gpus_of(fields.get("AllocTRES", "").replace("gres/gpu=", "gres/gpu:"))
            state = fields.get("State", "")
            usable = not any(s in state for s in ("DRAIN", "DOWN", "FAIL", "NOT_RESPONDING"))
            cpus = int(fields["CPUTot"]) if fields.get("CPUTot", "").isdigit() else 0
            cpus_used = int(fields["CPUAlloc"]) if fields.get("CPUAlloc", "").isdigit() else 0
            nodes.append(Node(fields["NodeName"], cpus, total, used, usable, cpus_used))
        return nodes

    def _read_nodes(self) -> list[Node]:
        self._nodes = self._parse_nodes(self._run("scontrol", "-o", "show", "node"))
        return self._nodes

    @staticmethod
    def _has_room(project: Project, gpus: int, cpus: int, spec: JobSpec) -> bool:
        """Whether one more task of ``spec`` fits its project's quotas, beside the ``gpus``
        and ``cpus`` its tasks in the project's QOS hold. A project with no CPU quota has
        no CPU limit for its GPU tasks (their GPU quota bounds them) and no room at all
        for GPU-less ones: they only borrow (see :meth:`_grp_tres`)."""
        if gpus + spec.gpus > project.gpus:
            return False
        if project.cpus > 0:
            return cpus + spec.cpu <= project.cpus
        return spec.gpus > 0

    async def _lend(self) -> None:
        """Lend idle GPUs and CPUs to tasks waiting on their quota; give back the quota's
        room."""
        ours = {self.qos(p.name): p for p in self.store.projects()}
        jobs = {int(j.engine_ref): j for j in self.store.jobs(include_done=False)
                if j.engine_ref is not None and j.uid not in self._deleting}
        # GPUs and CPUs held within each project's quota
        in_quota: dict[str, tuple[int, int]] = {}
        for task in self._all:
            if task.state in RUNNING_STATES and task.qos in ours:
                g, c = in_quota.get(task.qos, (0, 0))
                in_quota[task.qos] = (g + task.gpus_each, c + task.cpus_each)
        # a borrowed task waiting again goes back once its project has room
        for task in self._all:
            job = jobs.get(task.array_id)
            if job is None or task.qos != self.borrow_qos or task.state != "PENDING" \
                    or task.index is None:      # a whole array submitted to borrow stays
                continue
            qos = self.qos(job.project)
            project = ours.get(qos)
            g, c = in_quota.get(qos, (0, 0))
            if project is not None and self._has_room(project, g, c, job.spec):
                in_quota[qos] = (g + job.spec.gpus, c + job.spec.cpu)
                await self._move(job, task.job_id, qos, self.partition)
        running: dict[int, int] = {}     # array -> tasks running or lent
        for task in self._all:
            if task.state in RUNNING_STATES or \
                    (task.state == "PENDING" and task.qos == self.borrow_qos):
                running[task.array_id] = running.get(task.array_id, 0) + 1
        # idle GPUs and CPUs: free on a usable node, less what waiting tasks will take anyway
        usable = [n for n in self._nodes if n.usable]
        free = max((n.gpus - n.used for n in usable), default=0)
        free_cpus = max((n.cpus - n.cpus_used for n in usable), default=0)
        for task in self._all:
            if task.state != "PENDING":
                continue
            if task.reason in STARTING_REASONS or task.qos == self.borrow_qos:
                count = max(1, len(task.rest))
                if task.throttle:
                    count = min(count, max(0, task.throttle - running.get(task.array_id, 0)))
                free -= task.gpus_each * count
                free_cpus -= task.cpus_each * count
        for array_id, job in sorted(jobs.items(), key=lambda kv: kv[1].seq):
            gpus, cpus = job.spec.gpus, job.spec.cpu
            if free < gpus or free_cpus < cpus:
                continue
            waiting = [t for t in self._tasks.get(array_id, [])
                       if t.state == "PENDING" and t.reason in QUOTA_REASONS
                       and t.qos == self.qos(job.project)]
            indexes = sorted(i for t in waiting for i in ((t.index,) if t.index is not None
                                                         else t.rest))
            for index in indexes:
                if free < gpus or free_cpus < cpus or \
                        running.get(array_id, 0) >= job.spec.parallelism:
                    break
                await self._move(job, f"{array_id}_{index}", self.borrow_qos,
                                 self.borrow_partition)
                free -= gpus
                free_cpus -= cpus
                running[array_id] = running.get(array_id, 0) + 1

    async def _move(self, job: Job, task: int | str, qos: str, partition: str | None) -> None:
        async with self._changing:
            if job.uid in self._deleting:
                return      # a task moved after delete's scancel could start again
            log.info("task %s to QOS %s", task, qos)
            await self._arun("scontrol", "update", f"JobId={task}", f"QOS={qos}",
                             f"Partition={partition}", check=False)
