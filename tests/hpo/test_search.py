"""TPE, the pruners and trials=: on real processes sharing one journal, and replayed.

Every decision a pod takes (a TPE configuration, a prune) must follow from the journal
before it alone, so that every pod would have taken the same: the replays below fold the
journal a fresh reader's way and check each recorded decision against it.
"""

from __future__ import annotations

import math
import random
import signal
import time
from pathlib import Path
from typing import List, Tuple

import pytest

import podsweep.hpo as hpo
from podsweep.hpo._ledger import Ledger
from podsweep.hpo._tpe import CANDIDATES, GOOD_MAX, REST_MAX

from .conftest import events
from .test_faults import check_no_loss, wait_all

LEARNED = dict(metric="score", mode="max")


def space() -> dict:
    return {"x": hpo.uniform(0.0, 1.0), "c": [0, 1, 2, 3]}


def replay_configs(evs: List[dict]) -> Tuple[int, int]:
    """Each fresh trial's recorded configuration is the one a fresh reader computes from
    the journal before it. Returns (fresh trials, those that TPE chose, not random)."""
    ledger = Ledger()
    fresh = learned = 0
    for e in evs:
        if e["event"] == "assign" and e["attempt"] == 0:
            assert ledger.config(e["trial"]) == e["config"], e
            fresh += 1
            assert ledger.space is not None
            learned += ledger.space.config(e["trial"]) != e["config"]
        ledger.apply(e)
    return fresh, learned


def replay_prunes(evs: List[dict]) -> Tuple[int, int]:
    """A report is followed by its trial's ``pruned`` event exactly when the pruner, fed
    the journal before the report, prunes it. Returns (reports judged, prunes)."""
    ledger = Ledger()
    judged = pruned = 0
    for i, e in enumerate(evs):
        if e["event"] == "report":
            at = ledger.prune_at(e["trial"], e["attempt"], e["epoch"], e["metrics"])
            nxt = evs[i + 1] if i + 1 < len(evs) else {}
            followed = nxt.get("event") == "pruned" and nxt["trial"] == e["trial"]
            assert followed == (at is not None), (e, nxt, at)
            judged += 1
            pruned += followed
        ledger.apply(e)
    return judged, pruned


def run_serially(strategy: hpo.Strategy, seed: int, root: Path, trials: int = 40,
                 pruner=None) -> float:
    """One process, trials one after another: deterministic for a seed."""
    session = hpo.Session(root, f"{strategy.value}-{seed}-{pruner}")
    best = -math.inf
    for _ in range(trials):
        config = session.pick(space(), strategy, seed, trials=trials, pruner=pruner,
                              **LEARNED)
        value = 1.0 - (config["x"] - 0.3) ** 2 - 0.05 * abs(config["c"] - 2)
        session.report(0, {"score": value})
        best = max(best, value)
        session.end("finished")
    return best


# ---------------------------------------------------------------- TPE


def test_tpe_workers_share_one_experiment_and_each_configuration_replays(workers):
    procs = [workers.start("--strategy", "tpe", "--trials", "30", "--reports", "3")
             for _ in range(4)]
    wait_all(procs, 120)
    assert [p.returncode for p in procs] == [0] * 4
    evs = events(workers.journal)
    assert evs[0]["format"] == 2 and evs[0]["strategy"] == "tpe" and evs[0]["trials"] == 30
    assigned = sorted(e["trial"] for e in evs if e["event"] == "assign")
    assert assigned == list(range(1, 31))
    fresh, learned = replay_configs(evs)
    assert fresh == 30
    assert learned >= 10, "after its 10 random trials TPE chose the configurations"
    check_no_loss(workers, evs)
    assert {t.status for t in hpo.results(workers.journal)} == {"finished"}


def test_tpe_finds_better_configurations_than_random_search(tmp_path):
    tpe = sorted(run_serially(hpo.Strategy.TPE, s, tmp_path) for s in range(5))
    rnd = sorted(run_serially(hpo.Strategy.RandomSearch, s, tmp_path) for s in range(5))
    assert tpe[2] > rnd[2], (tpe, rnd)        # the medians over 5 seeds


def test_tpe_is_reproducible_from_its_seed(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    run_serially(hpo.Strategy.TPE, 7, tmp_path / "a")
    run_serially(hpo.Strategy.TPE, 7, tmp_path / "b")
    first = events(tmp_path / "a" / "tpe-7-None" / "hpo.jsonl")
    second = events(tmp_path / "b" / "tpe-7-None" / "hpo.jsonl")
    configs = [e["config"] for e in first if e["event"] == "assign"]
    assert len(configs) == 40
    assert configs == [e["config"] for e in second if e["event"] == "assign"]


def journal_of(trials: int) -> List[dict]:
    """A TPE experiment's events: ``trials`` trials handed out and finished, one running."""
    rng = random.Random(trials)
    evs: List[dict] = [{"event": "experiment", "format": 2, "name": "e", "strategy": "tpe",
                        "seed": 0, "space": {"x": {"dist": "uniform", "low": 0, "high": 1},
                                             "c": [0, 1, 2, 3]},
                        "size": None, "metric": "score", "mode": "max", "pruner": None,
                        "trials": None, "time": 1.0}]
    for t in range(1, trials + 2):
        config = {"x": rng.random(), "c": rng.randrange(4)}
        evs.append({"event": "assign", "trial": t, "attempt": 0, "worker": "w",
                    "lease": 60, "config": config, "time": 1.0})
        if t <= trials:
            evs.append({"event": "report", "trial": t, "attempt": 0, "epoch": 0,
                        "metrics": {"score": rng.random()}, "time": 1.0})
            evs.append({"event": "finished", "trial": t, "attempt": 0, "time": 1.0})
    return evs


def test_a_pick_costs_the_same_at_10_000_trials_as_at_100():
    work = {}
    for n in (10, 100, 1000, 10_000):
        ledger = Ledger()
        for e in journal_of(n):
            ledger.apply(e)
        assert ledger.tpe is not None
        config = ledger.config(n + 2)
        assert set(config) == {"x", "c"}
        work[n] = ledger.tpe.work
    assert work[10] > 0
    bound = CANDIDATES * (GOOD_MAX + REST_MAX + 2) * 2
    assert work[1000] == work[10_000] <= bound, work


# ---------------------------------------------------------------- pruners


@pytest.mark.parametrize("pruner", ["asha", "median"])
def test_pruning_workers_agree_with_a_replay_of_the_journal(workers, pruner):
    """4 pods, 24 trials of 9 epochs, one pod SIGKILLed mid-sweep and rerun (it takes its
    trial over): every prune is the one the journal before it implies, pruned pods exit 0,
    nothing is lost."""
    args = ("--strategy", "random", "--trials", "24", "--reports", "9", "--pruner", pruner,
            "--sleep", "0.01")

    def pod(index: int, attempt: int = 0) -> dict:
        return {"PODSWEEP_JOB_UID": "j1", "PODSWEEP_POD_NAME": f"p-{index}-{attempt}",
                "PODSWEEP_POD_INDEX": str(index)}

    procs = [workers.start(*args, env=pod(i)) for i in range(4)]
    time.sleep(0.3)
    procs[0].send_signal(signal.SIGKILL)
    procs[0].wait()
    procs.append(workers.start(*args, env=pod(0, 1)))
    wait_all(procs[1:], 120)
    assert [p.returncode for p in procs[1:]] == [0] * 4
    evs = events(workers.journal)
    judged, pruned = replay_prunes(evs)
    assert judged > 24 and pruned > 0
    check_no_loss(workers, evs)
    res = hpo.results(workers.journal)
    statuses = {t.id: t.status for t in res}
    assert sorted(statuses) == list(range(1, 25))
    assert {"pruned", "finished"} <= set(statuses.values()) <= {"pruned", "finished"}
    prunes = [r for r in workers.records() if r[0] == "X"]
    assert prunes and all(statuses[int(r[1])] == "pruned" for r in prunes)
    for _, trial, attempt, epoch in prunes:    # the worker stopped at its prune
        assert not [r for r in workers.records() if r[0] == "R" and r[1:3] == [trial, attempt]
                    and int(r[3]) > int(epoch)]
    for t in res:
        if t.status == "pruned":
            later = [e for e in evs if e["event"] == "assign" and e["trial"] == t.id
                     and e["time"] > t.ended]
            assert later == [], "a pruned trial is never handed out again"
    assert res.epochs_used == sum(t.epochs for t in res) < res.epochs_full == 9 * 24


def asha_session(root: Path, name: str = "e") -> hpo.Session:
    return hpo.Session(root, name)


def pick_asha(session: hpo.Session) -> dict:
    return session.pick(space(), hpo.Strategy.RandomSearch, 0, trials=20,
                        pruner=hpo.ASHA(min_epoch=1, reduction_factor=2), **LEARNED)


def test_asha_keeps_the_better_half_at_each_rung(tmp_path):
    a, b = asha_session(tmp_path), asha_session(tmp_path)
    pick_asha(a)
    a.report(0, {"score": 0.5})
    a.report(1, {"score": 0.5})          # rung 0, the first there: it leads, goes on
    assert not a.should_prune()
    pick_asha(b)
    b.report(1, {"score": 0.4})          # 2 at the rung, keep 2 // 2 = 1: not this one
    assert b.should_prune()
    b.report(2, {"score": 0.9})          # kept, judged no more
    assert b.should_prune()
    pick_asha(b)
    b.report(1, {"score": 0.6})          # 3 at the rung, keep 1: the best, this one
    assert not b.should_prune()
    b.report(2, {"score": 0.7})          # rung 1 (epoch 2): the first there
    assert not b.should_prune()
    res = hpo.results(tmp_path / "e")
    assert [t.status for t in res] == ["running", "pruned", "running"]
    assert res[1].epochs == 2 and res[1].last("score") == 0.9


def test_a_pruned_trial_stays_pruned_through_a_preemption(tmp_path):
    a, b = asha_session(tmp_path), asha_session(tmp_path)
    pick_asha(a)
    a.report(1, {"score": 0.9})
    pick_asha(b)
    b.report(1, {"score": 0.1})
    assert b.should_prune()
    b.end("preempted")                   # as the SIGTERM handler does: the prune stands
    assert hpo.results(tmp_path / "e")[1].status == "pruned"
    c = asha_session(tmp_path)
    pick_asha(c)
    assert hpo.trial is not None and c.current is not None and c.current.id == 3


def test_a_resumed_trial_is_not_judged_again_at_a_rung_it_passed(tmp_path):
    a = asha_session(tmp_path)
    pick_asha(a)
    a.report(1, {"score": 0.3})          # rung 0 passed, alone
    others = asha_session(tmp_path)
    for value in (0.8, 0.9):             # better ones reach the rung after it
        pick_asha(others)
        others.report(1, {"score": value})
        others.end("finished")
    a.end("preempted")
    again = asha_session(tmp_path)
    pick_asha(again)
    assert again.current is not None and again.current.id == 1 and again.current.resumed
    again.report(1, {"score": 0.3})      # the same rung again: its decision holds
    assert not again.should_prune()


def test_median_prunes_below_the_finished_trials_median(tmp_path):
    def pick(session: hpo.Session) -> None:
        session.pick(space(), hpo.Strategy.RandomSearch, 0, pruner=hpo.Median(
            warmup_epochs=1, min_trials=2), **LEARNED)

    s = asha_session(tmp_path)
    for values in ([0.2, 0.5, 0.6], [0.4, 0.7, 0.8]):
        pick(s)
        for epoch, value in enumerate(values):
            s.report(epoch, {"score": value})
        assert not s.should_prune()
        s.end("finished")
    pick(s)
    s.report(0, {"score": 0.0})          # warm-up: not judged
    assert not s.should_prune()
    s.report(1, {"score": 0.61})         # the median at epoch 1 is 0.6: not below it
    assert not s.should_prune()
    s.report(2, {"score": 0.65})         # best so far 0.65 < median 0.7
    assert s.should_prune()
    assert hpo.results(tmp_path / "e")[2].status == "pruned"


# ---------------------------------------------------------------- declaration, trials=


def test_trials_bounds_random_search_across_workers(workers):
    procs = [workers.start("--strategy", "random", "--trials", "7", "--reports", "1")
             for _ in range(3)]
    wait_all(procs, 60)
    assert [p.returncode for p in procs] == [0] * 3
    res = hpo.results(workers.journal)
    assert [t.id for t in res] == list(range(1, 8)) and res.size == 7


def test_a_pick_that_declares_another_goal_is_refused(tmp_path):
    first = hpo.Session(tmp_path, "e")
    first.pick(space(), hpo.Strategy.TPE, 0, metric="score", mode="max", pruner="asha",
               trials=10)
    other = hpo.Session(tmp_path, "e")
    for change in (dict(metric="loss"), dict(mode="min"), dict(pruner="median"),
                   dict(pruner=hpo.ASHA(reduction_factor=5)), dict(pruner=None),
                   dict(trials=11)):
        kwargs = dict(metric="score", mode="max", pruner="asha", trials=10, **{})
        kwargs.update(change)
        with pytest.raises(hpo.SpaceMismatch, match="declared with TPE"):
            other.pick(space(), hpo.Strategy.TPE, 0, **kwargs)
    assert other.pick(space(), hpo.Strategy.TPE, 0, metric="score", mode="max",
                      pruner=hpo.ASHA(), trials=10)
    assert len(hpo.results(tmp_path / "e")) == 2


@pytest.mark.parametrize("kwargs, message", [
    (dict(strategy=hpo.Strategy.TPE), "Strategy.TPE needs metric="),
    (dict(pruner="asha"), "a pruner needs metric="),
    (dict(metric="score", pruner="hyperband"), "pruner must be None, 'asha'"),
    (dict(metric="score", mode="up"), "mode must be 'max' or 'min'"),
    (dict(mode="max"), "mode= needs metric="),
    (dict(metric="score", trials=0), "trials must be a positive int"),
    (dict(metric="score", pruner=None, trials=True), "trials must be a positive int"),
])
def test_bad_arguments_get_one_clear_error_and_write_nothing(tmp_path, kwargs, message):
    session = hpo.Session(tmp_path, "e")
    strategy = kwargs.pop("strategy", hpo.Strategy.RandomSearch)
    with pytest.raises(hpo.InvalidArgument, match=message):
        session.pick(space(), strategy, 0, **kwargs)
    assert (tmp_path / "e" / "hpo.jsonl").read_bytes() == b""


@pytest.mark.parametrize("make", [lambda: hpo.ASHA(reduction_factor=1),
                                  lambda: hpo.ASHA(min_epoch=0),
                                  lambda: hpo.Median(min_trials=0),
                                  lambda: hpo.Median(warmup_epochs=-1)])
def test_pruner_options_are_checked(make):
    with pytest.raises(hpo.InvalidArgument):
        make()


def test_plain_grid_and_random_journals_stay_format_1(tmp_path):
    for strategy in (hpo.Strategy.GridSearch, hpo.Strategy.RandomSearch):
        session = hpo.Session(tmp_path, strategy.value)
        session.pick({"a": [1, 2]}, strategy)
        header = events(tmp_path / strategy.value / "hpo.jsonl")[0]
        assert header["format"] == 1 and "metric" not in header and "trials" not in header
