"""The Slurm engine's lending decision: table-driven cases over small snapshots of one poll,
then the real snapshot in tests/golden/slurm. No Slurm needed: the decision is a pure
function of squeue's records, the nodes, the quotas and podsweep's arrays."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import pytest

from podsweep.cluster.slurm.lend import ArrayJob, Move, Quota, has_room, lend
from podsweep.cluster.slurm.parse import Node, Task, parse_nodes, tasks_from_squeue

BORROW = "ps_borrow"

# ---------------------------------------------------------------------------------------
# Builders: a project "a" is QOS "ps-a"; array 10's tasks have job ids 100 + index


def task(array: int, index: int | None, state: str = "RUNNING", *, project: str = "a",
         qos: str | None = None, reason: str = "None", rest: Sequence[int] = (),
         gpus: int = 1, cpus: int = 1, throttle: int = 0, restarts: int = 0) -> Task:
    job_id = array if index is None else array * 10 + index
    return Task(job_id, array, index, tuple(rest), state, reason, qos or f"ps-{project}",
                "gpu", restarts, None, (), "n1", gpus, throttle, 0.0, 0.0, cpus_each=cpus)


def waiting(array: int, *indexes: int, project: str = "a", reason: str = "QOSGrpGRES",
            gpus: int = 1, cpus: int = 1, throttle: int = 0) -> Task:
    """The array's pending rest."""
    return task(array, None, "PENDING", project=project, reason=reason, rest=indexes,
                gpus=gpus, cpus=cpus, throttle=throttle)


def lent(array: int, index: int, state: str = "RUNNING", **kw: object) -> Task:
    return task(array, index, state, qos=BORROW, **kw)     # type: ignore[arg-type]


def node(gpus: int = 4, used: int = 0, cpus: int = 16, cpus_used: int = 0,
         usable: bool = True) -> Node:
    return Node("n1", cpus, gpus, used, usable, cpus_used)


def job(array: int, project: str = "a", *, gpus: int = 1, cpus: int = 1,
        parallelism: int = 8, seq: int = 1) -> ArrayJob:
    return ArrayJob(array, f"ps-{project}", gpus, cpus, parallelism, seq)


def quota(project: str, gpus: int, cpus: int = 0) -> Quota:
    return Quota(f"ps-{project}", gpus, cpus)


def loan(array: int, index: int) -> Move:
    return Move(array, f"{array}_{index}", BORROW, "borrow")


def back(array: int, index: int) -> Move:
    return Move(array, str(array * 10 + index), "ps-a", "gpu")


@dataclass(frozen=True)
class Case:
    name: str
    tasks: Sequence[Task]
    jobs: Sequence[ArrayJob]
    quotas: Sequence[Quota] = (Quota("ps-a", 1, 0),)
    nodes: Sequence[Node] = (Node("n1", 16, 4, 1, True, 1),)
    moves: Sequence[Move] = ()


CASES = [
    Case("tasks waiting on the quota are lent the idle GPUs, lowest index first",
         [task(1, 0), waiting(1, 1, 2, 3, 4)], [job(1)],
         moves=[loan(1, 1), loan(1, 2), loan(1, 3)]),
    Case("no more than the job's parallelism runs, lent tasks included",
         [task(1, 0), lent(1, 1), waiting(1, 2, 3, 4)], [job(1, parallelism=3)],
         nodes=[node(used=2)], moves=[loan(1, 2)]),
    Case("nothing idle, nothing lent", [task(1, 0), waiting(1, 1, 2)], [job(1)],
         nodes=[node(used=4)]),
    Case("a GPU holding shards of a running task is not idle, though no gres/gpu is used",
         # b's two tasks of shards hold GPUs 1 and 2 (Slurm's gres_detail: shard:2(IDX:1))
         [task(1, 0), waiting(1, 1, 2, 3),
          replace(task(2, 0, project="b", gpus=0), gpus=(1,)),
          replace(task(2, 1, project="b", gpus=0), gpus=(2,))],
         [job(1)], quotas=[quota("a", 1), quota("b", 1)], nodes=[node(used=1)],
         moves=[loan(1, 1)]),
    Case("a drained node lends nothing", [task(1, 0), waiting(1, 1, 2)], [job(1)],
         nodes=[node(used=1, usable=False)]),
    Case("the idle GPUs of the emptiest usable node: a task runs on one node",
         [task(1, 0), waiting(1, 1, 2, 3)], [job(1)],
         nodes=[node(used=1), Node("n2", 16, 4, 2, True, 0)],
         moves=[loan(1, 1), loan(1, 2), loan(1, 3)]),
    Case("a task asking for more GPUs than are idle waits",
         [task(1, 0, gpus=2), waiting(1, 1, 2, gpus=2)], [job(1, gpus=2)],
         quotas=[quota("a", 2)], nodes=[node(used=3)]),
    Case("tasks that will start anyway take the idle GPUs first",
         [task(1, 0), waiting(1, 1, 2), waiting(2, 0, 1, project="b", reason="Resources")],
         [job(1, seq=1), job(2, "b", seq=2)], quotas=[quota("a", 1), quota("b", 4)],
         moves=[loan(1, 1)]),
    Case("an array's throttle bounds what its starting tasks take",
         [task(1, 0), waiting(1, 1, 2),
          task(2, 0, project="b"), waiting(2, 1, 2, 3, 4, project="b", reason="Priority",
                                           throttle=2)],
         [job(1, seq=1)], quotas=[quota("a", 1), quota("b", 4)], nodes=[node(used=2)],
         moves=[loan(1, 1)]),
    Case("idle CPUs bound the loans too",
         [task(1, 0, gpus=0, cpus=4), waiting(1, 1, 2, 3, gpus=0, cpus=4,
                                              reason="QOSGrpCpuLimit")],
         [job(1, gpus=0, cpus=4)], quotas=[quota("a", 0, 4)], nodes=[node(cpus_used=6)],
         moves=[loan(1, 1), loan(1, 2)]),
    Case("jobs are lent to in submit order, not in the order listed",
         [waiting(2, 0, 1), waiting(1, 0, 1)], [job(2, seq=2), job(1, seq=1)],
         quotas=[quota("a", 0)], nodes=[node(used=2)], moves=[loan(1, 0), loan(1, 1)]),
    Case("a later job that fits is lent to when an earlier one does not",
         [waiting(1, 0, gpus=2), waiting(2, 0)], [job(1, gpus=2, seq=1), job(2, seq=2)],
         quotas=[quota("a", 0)], nodes=[node(used=3)], moves=[loan(2, 0)]),
    Case("a task waiting for another reason is not lent",
         [task(1, 0), waiting(1, 1, reason="Dependency")], [job(1)]),
    Case("arrays that are not podsweep's, or are being deleted, are left alone",
         [task(1, 0), waiting(1, 1, 2)], []),
    Case("a preempted lent task goes back to its project's QOS once it has room",
         [lent(1, 3, "PENDING", reason="BeginTime", restarts=1), waiting(1, 4, 5)],
         [job(1)], nodes=[node(used=3)], moves=[back(1, 3)]),
    Case("... and stays lent while its project is full",
         [task(1, 0), lent(1, 3, "PENDING", reason="BeginTime", restarts=1)], [job(1)],
         nodes=[node(used=3)]),
    Case("a whole array submitted to the borrow QOS stays there",
         [task(1, None, "PENDING", qos=BORROW, rest=(0, 1))], [job(1)],
         quotas=[quota("a", 4)], nodes=[node(used=0)]),
    Case("the room is counted in CPUs where the project has a CPU quota",
         [task(1, 0, gpus=0, cpus=2),
          lent(1, 1, "PENDING", gpus=0, cpus=2, reason="BeginTime", restarts=1)],
         [job(1, gpus=0, cpus=2)], quotas=[quota("a", 0, 3)], nodes=[node(cpus_used=16)]),
]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_lend(case: Case) -> None:
    assert lend(case.tasks, case.nodes, case.quotas, case.jobs, BORROW, "gpu",
                "borrow") == list(case.moves)


@pytest.mark.parametrize("quota_gpus, quota_cpus, held, task_gpus, task_cpus, room", [
    (2, 0, (1, 0), 1, 1, True),       # within the GPU quota; no CPU quota, no CPU limit
    (2, 0, (2, 0), 1, 1, False),      # the GPU quota full
    (1, 0, (0, 0), 2, 1, False),      # a task bigger than the quota never fits
    (0, 0, (0, 0), 0, 1, False),      # GPU-less with no CPU quota: it only borrows
    (0, 4, (0, 2), 0, 2, True),       # the CPU quota binds GPU-less tasks
    (0, 4, (0, 3), 0, 2, False),
    (4, 4, (1, 4), 1, 1, False),      # both quotas bind a GPU task
])
def test_has_room(quota_gpus: int, quota_cpus: int, held: tuple[int, int], task_gpus: int,
                  task_cpus: int, room: bool) -> None:
    assert has_room(Quota("ps-a", quota_gpus, quota_cpus), *held,
                    ArrayJob(1, "ps-a", task_gpus, task_cpus, 1, 1)) is room


def test_the_captured_snapshot() -> None:
    """The real poll of tests/golden/slurm: index 3, preempted out of its loan, waits in the
    borrow QOS while its project is full (index 2 holds its 1 GPU), and nothing is idle."""
    golden = Path(__file__).resolve().parents[1] / "golden" / "slurm"
    tasks = tasks_from_squeue((golden / "squeue.json").read_text())
    nodes = parse_nodes((golden / "scontrol-show-node.txt").read_text())
    array = next(t.array_id for t in tasks if t.array_id)
    team = ArrayJob(array, "ps-golden-team", 1, 2, 6, 1)
    quotas = [Quota("ps-golden-team", 1, 0), Quota("ps-golden-other", 2, 0)]
    assert lend(tasks, nodes, quotas, [team], "ps_golden-borrow", "gpu", "borrow") == []
    # with one GPU idle (the claim gone) still none: the requeued task takes it itself
    idle = [Node("vm", 16, 4, 3, True, 3)]
    assert lend(tasks, idle, quotas, [team], "ps_golden-borrow", "gpu", "borrow") == []
    # a second idle GPU is lent to the rest, lowest index first
    two = [Node("vm", 16, 4, 2, True, 3)]
    assert lend(tasks, two, quotas, [team], "ps_golden-borrow", "gpu", "borrow") == [
        Move(array, f"{array}_6", "ps_golden-borrow", "borrow")]
