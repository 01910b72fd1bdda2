"""The Slurm engine's parsers on real answers of Slurm 22.05, captured by
tests/golden/slurm/capture.py while one array ran through every state a task takes: no
Slurm needed here."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from podsweep.cluster.slurm.parse import (
    Node,
    array_in_sacct,
    array_in_squeue,
    max_array_size,
    parse_nodes,
    partitions,
    read_accounts,
    shards_per_gpu,
    tasks_from_sacct,
    tasks_from_squeue,
)

GOLDEN = Path(__file__).resolve().parents[1] / "golden" / "slurm"
ARRAYS = json.loads((GOLDEN / "arrays.json").read_text())
ARRAY, CLAIM = ARRAYS["array"], ARRAYS["claim"]
TEAM, BORROW = "ps-golden-team", "ps_golden-borrow"


def golden(name: str) -> str:
    return (GOLDEN / name).read_text()


def test_squeue_json_tasks_in_every_state() -> None:
    tasks = tasks_from_squeue(golden("squeue.json"))
    mine = {t.index: t for t in tasks if t.array_id == ARRAY}
    # (state, reason, QOS, partition, attempt, exit code, GPUs held, node)
    assert {i: (t.state, t.reason, t.qos, t.partition, t.restarts, t.exit_code, t.gpus,
                t.node) for i, t in mine.items()} == {
        0: ("COMPLETED", "None", TEAM, "gpu", 0, 0, (), "vm"),
        1: ("FAILED", "NonZeroExitCode", TEAM, "gpu", 0, 3, (), "vm"),
        2: ("RUNNING", "None", TEAM, "gpu", 0, 0, (0,), "vm"),
        # lent, preempted by the other project, requeued: its next attempt waits
        3: ("PENDING", "BeginTime", BORROW, "borrow", 1, 0, (), ""),
        4: ("CANCELLED", "None", BORROW, "borrow", 0, 0, (), "vm"),
        5: ("RUNNING", "None", BORROW, "borrow", 0, 0, (3,), "vm"),
        # the array's pending rest, waiting on its project's GPU quota
        None: ("PENDING", "QOSGrpGRES", TEAM, "gpu", 0, 0, (), ""),
    }
    rest = mine[None]
    assert (rest.job_id, rest.rest, rest.throttle) == (ARRAY, (6, 7), 6)
    assert {(t.gpus_each, t.cpus_each) for t in mine.values()} == {(1, 2)}
    assert all(t.job_id != ARRAY for i, t in mine.items() if i is not None)
    assert all(not t.accounting for t in tasks)
    # a plain job, not an array: no array id, no index
    claim = next(t for t in tasks if t.job_id == CLAIM)
    assert (claim.array_id, claim.index, claim.rest, claim.state, claim.gpus,
            claim.gpus_each, claim.cpus_each) == (0, None, (), "RUNNING", (1, 2), 2, 1)
    # Slurm's times, in seconds: an ended task's end, a running one's start
    assert 0 < mine[0].start <= mine[0].end and mine[2].start > 0


def test_sacct_attempts_in_order() -> None:
    tasks = tasks_from_sacct(golden("sacct.txt"), str(ARRAY), now=1000.0)
    assert [(t.index, t.restarts, t.state, t.exit_code, t.qos, t.partition)
            for t in tasks] == [
        (0, 0, "COMPLETED", 0, TEAM, "gpu"),
        (1, 0, "FAILED", 3, TEAM, "gpu"),
        (2, 0, "RUNNING", 0, TEAM, "gpu"),
        (3, 0, "PREEMPTED", 0, BORROW, "borrow"),
        (4, 0, "CANCELLED", 0, BORROW, "borrow"),    # "CANCELLED by 0"
        (5, 0, "RUNNING", 0, BORROW, "borrow"),
        (3, 1, "PENDING", 0, BORROW, "borrow"),      # the preempted index's next attempt
    ]       # the pending rest, 124_[6-7%6], is no task yet
    assert all(t.accounting and t.array_id == ARRAY and t.start == t.end == 1000.0
               for t in tasks)


def test_sacct_a_record_followed_by_another_of_its_index_was_requeued() -> None:
    text = ("11|10_0|FAILED|3:0|x|x|q|p\n"          # podsweep requeued it after its failure
            "11|10_0|COMPLETED|0:0|x|x|q|p\n"
            "12|10_1|CANCELLED|0:15|x|x|q|p\n"      # killed by SIGTERM
            "13|10_2|OUT_OF_MEMORY|0:125|x|x|q|p\n")
    tasks = tasks_from_sacct(text, "10", now=0.0)
    assert [(t.index, t.restarts, t.state, t.exit_code) for t in tasks] == [
        (0, 0, "REQUEUED", 3), (0, 1, "COMPLETED", 0), (1, 0, "CANCELLED", 128 + 15),
        (2, 0, "OUT_OF_MEMORY", 128 + 125)]


def test_an_array_is_found_by_its_name() -> None:
    name = "sweep.golden-uid"
    assert array_in_squeue(golden("squeue.json"), name) == str(ARRAY)
    assert array_in_sacct(golden("sacct-by-name.txt"), name) == str(ARRAY)
    assert array_in_squeue(golden("squeue.json"), "sweep.other") is None
    assert array_in_sacct(golden("sacct-by-name.txt"), "sweep.other") is None


def test_nodes() -> None:
    # all 4 GPUs held: 2 by the array (tasks 2 and 5), 2 by the claim; 5 CPUs (2 + 2 + 1)
    assert parse_nodes(golden("scontrol-show-node.txt")) == [Node("vm", 16, 4, 4, True, 5)]
    drained = "NodeName=n2 CPUTot=8 CPUAlloc=0 State=IDLE+DRAIN CfgTRES=cpu=8,gres/gpu=2"
    assert parse_nodes(drained) == [Node("n2", 8, 2, 0, False, 0)]


def test_nodes_with_shards() -> None:
    # scripts/slurm-up.sh's node, its 4 GPUs cut in 4 shards each, one task holding 2: a
    # shard is no whole GPU in use
    nodes = parse_nodes(golden("scontrol-show-node-shards.txt"))
    assert nodes == [Node("vm", 16, 4, 0, True, 1, 16)]
    assert shards_per_gpu(nodes) == 4
    assert shards_per_gpu([Node("n", 8, 2, 0, True)]) == 0          # no shards at all
    # nodes that cut their GPUs otherwise: a share would be a different count on each
    assert shards_per_gpu([*nodes, Node("n", 8, 2, 0, True, 0, 4)]) == 0
    assert shards_per_gpu([*nodes, Node("n", 8, 0, 0, True)]) == 4    # a GPU-less node


@pytest.mark.parametrize("text, expected", [
    ("gpu*\nborrow\n", {"gpu": True, "borrow": False}),
    ("", {}),
])
def test_partitions(text: str, expected: dict[str, bool]) -> None:
    assert partitions(text) == expected


def test_accounts_and_the_array_size() -> None:
    assert read_accounts("root|default root account\nt-team|podsweep project team\n") == {
        "root": "default root account", "t-team": "podsweep project team"}
    assert max_array_size("MaxArraySize            = 10001\nMaxJobCount = 10000\n") == 10001
    assert max_array_size("MaxJobCount = 10000\n") == 1001
