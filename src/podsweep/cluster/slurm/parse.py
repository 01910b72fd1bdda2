"""What Slurm's commands answer, read into plain records: ``squeue --json`` and ``sacct`` into
:class:`Task`, ``scontrol -o show node`` into :class:`Node`, and the smaller answers the engine
reads at start-up. Pure functions of the text; tests/golden/slurm holds real answers."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, replace
from typing import Any

# waiting on its project's quota of GPUs or of CPUs: what lending may help
QUOTA_REASONS = {"QOSGrpGRES", "AssocGrpGRES", "QOSGrpCpuLimit", "AssocGrpCpuLimit"}
STARTING_REASONS = {"None", "Priority", "Resources"}    # will run as soon as GPUs are free
LIVE_STATES = {"PENDING", "RUNNING", "COMPLETING", "CONFIGURING", "SUSPENDED", "REQUEUED",
               "REQUEUE_FED", "REQUEUE_HOLD", "RESIZING", "SIGNALING", "STAGE_OUT",
               "PREEMPTED", "RESV_DEL_HOLD", "SPECIAL_EXIT", "STOPPED"}
RUNNING_STATES = {"RUNNING", "COMPLETING", "CONFIGURING", "SIGNALING", "STAGE_OUT"}
STARTED_STATES = {"RUNNING", "CONFIGURING", "SIGNALING", "STAGE_OUT", "SUSPENDED"}
REQUEUED_STATES = {"PREEMPTED", "REQUEUED", "REQUEUE_FED", "REQUEUE_HOLD"}


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
    shards: int = 0              # gres/shard: the node's GPUs cut in shards, all told


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


def task_from_json(job: dict[str, Any]) -> Task:
    """One record of ``squeue --json``'s ``jobs``."""
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
                float(job.get("end_time") or 0), cpus_each=_cpus_each(job))


def _cpus_each(job: dict[str, Any]) -> int:
    """The CPUs a task asks for. Slurm 22.05's ``squeue --json`` has ``cpus_per_task`` null
    whatever ``--cpus-per-task`` said (tests/golden/slurm/squeue.json); its ``cpus``, the
    task's CPUs on its one node, holds the number."""
    return _number(job.get("cpus_per_task"), 0) or _number(job.get("cpus"), 1)


def squeue_records(text: str) -> list[dict[str, Any]]:
    """``squeue --json``'s records."""
    jobs: list[dict[str, Any]] = json.loads(text).get("jobs", [])
    return jobs


def tasks_from_squeue(text: str) -> list[Task]:
    """Every record of ``squeue --json``."""
    return [task_from_json(j) for j in squeue_records(text)]


def tasks_from_sacct(text: str, array_id: str, now: float) -> list[Task]:
    """``sacct -D -X -P -n -j ARRAY --format=JobIDRaw,JobID,State,ExitCode,Start,End,QOS,
    Partition``: each index's records in order, the n-th being attempt n."""
    seen: dict[int, int] = {}
    tasks = []
    for line in text.splitlines():
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
                          fields[7], attempt, exit_code, (), "", 0, 0, now, now,
                          accounting=True))
    # a record followed by another of its index was requeued
    last = {t.index: t.restarts for t in tasks}
    return [t if t.restarts == last[t.index] or t.state in REQUEUED_STATES else
            replace(t, state="REQUEUED") for t in tasks]


def array_in_squeue(text: str, name: str) -> str | None:
    """The id of the array named ``name`` in ``squeue --json``, if it lists one."""
    for record in squeue_records(text):
        if record.get("name") == name:
            return str(record.get("array_job_id") or record["job_id"])
    return None


def array_in_sacct(text: str, name: str) -> str | None:
    """The id of the array named ``name`` in ``sacct -X -n -P --format=JobID,JobName``."""
    for line in text.splitlines():
        job_id, _, found = line.partition("|")
        if found == name and job_id:
            return job_id.split("_")[0]
    return None


def parse_nodes(text: str) -> list[Node]:
    """``scontrol -o show node``."""
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
        shards = re.search(r"gres/shard=(\d+)", fields.get("CfgTRES", ""))
        nodes.append(Node(fields["NodeName"], cpus, total, used, usable, cpus_used,
                          int(shards.group(1)) if shards else 0))
    return nodes


def shards_per_gpu(nodes: list[Node]) -> int:
    """How many shards (gres/shard) each GPU is cut in, the same on every node that has
    them; 0 where no node has shards, or nodes cut their GPUs differently (a share of one
    GPU would then be a different number of shards on each)."""
    cuts = {n.shards // n.gpus for n in nodes if n.gpus and n.shards}
    return cuts.pop() if len(cuts) == 1 else 0


def read_accounts(text: str) -> dict[str, str]:
    """``sacctmgr show account format=account,description`` as account -> description."""
    rows = (line.partition("|") for line in text.splitlines())
    return {account: description for account, bar, description in rows if bar}


def partitions(text: str) -> dict[str, bool]:
    """``sinfo -h -o %P`` as partition -> whether it is the default."""
    return {n.rstrip("*"): n.endswith("*") for n in text.split()}


def max_array_size(text: str) -> int:
    """The most tasks an array may have, from ``scontrol show config``: indexes go up to
    MaxArraySize less one."""
    for line in text.splitlines():
        key, _, value = line.partition("=")
        if key.strip() == "MaxArraySize" and value.strip().isdigit():
            return int(value.strip())
    return 1001
