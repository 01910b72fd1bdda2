"""The library as a training script uses it: the walk-through's calls, lines, and errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Optional

import pytest

import podsweep.hpo as hpo
from podsweep.hpo import Session

from .conftest import SRC, events

GRID = dict(batch_size=[32, 64, 128], lr=[1, 0.1, 0.01, 0.001])


def run_py(code: str, cwd: Path, env: Optional[dict] = None, check: bool = True):
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=cwd,
                          capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PYTHONPATH": str(SRC), **(env or {})})
    if check and proc.returncode != 0:
        raise AssertionError(f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
    return proc


def test_walkthrough_code_runs_unchanged_but_for_the_import(tmp_path):
    hpo_dir = tmp_path / "nfs"
    hpo_dir.mkdir()
    out = run_py(f"""
        import podsweep.hpo as hpo
        hpo_dir = {str(hpo_dir)!r}
        strategy = hpo.Strategy.GridSearch
        hpo.init(hpo_dir)
        config = hpo.pick(
        grid=dict(
                batch_size=[32, 64, 128],
                lr=[1, 0.1, 0.01, 0.001]),
        strategy=strategy)
        hpo.report(epoch=5, metrics={{"accuracy": 0.87}})
        print("lr is", config["lr"])
    """, tmp_path).stdout
    assert f"Using HPO directory {hpo_dir}" in out
    assert "Picked HPO experiment #1" in out
    assert "Using configuration: {'batch_size': 32, 'lr': 1}" in out
    assert "lr is 1" in out
    journal = hpo_dir / "default" / "hpo.jsonl"
    kinds = [e["event"] for e in events(journal)]
    assert kinds == ["experiment", "assign", "report", "finished"]


def test_experiment_name_comes_from_the_pods_environment(tmp_path):
    code = f"""
        import podsweep.hpo as hpo
        hpo.init({str(tmp_path)!r})
        hpo.pick(grid=dict(x=[1, 2, 3]), strategy=hpo.Strategy.GridSearch)
    """
    run_py(code, tmp_path, env={"PODSWEEP_JOB_NAME": "hpo1", "PODSWEEP_JOB_UID": "a1b2"})
    run_py(code, tmp_path, env={"PODSWEEP_JOB_NAME": "hpo1", "PODSWEEP_JOB_UID": "c3d4"})
    # two runs of a job named hpo1 never mix: each starts at trial 1 in its own journal
    for uid in ("a1b2", "c3d4"):
        assigns = [e for e in events(tmp_path / f"hpo1-{uid}" / "hpo.jsonl")
                   if e["event"] == "assign"]
        assert [a["trial"] for a in assigns] == [1]


def test_lease_comes_from_the_argument_or_the_environment(tmp_path):
    code = f"""
        import podsweep.hpo as hpo
        hpo.init({str(tmp_path)!r}, experiment="e")
        hpo.pick(grid=dict(x=[1, 2, 3]), strategy=hpo.Strategy.GridSearch)
        hpo.init({str(tmp_path)!r}, experiment="e", lease_seconds=7)
        hpo.pick(grid=dict(x=[1, 2, 3]), strategy=hpo.Strategy.GridSearch)
    """
    run_py(code, tmp_path, env={"PODSWEEP_HPO_LEASE_SECONDS": "42"})
    leases = [e["lease"] for e in events(tmp_path / "e" / "hpo.jsonl") if e["event"] == "assign"]
    assert leases == [42, 7]
    bad = run_py(code, tmp_path, env={"PODSWEEP_HPO_LEASE_SECONDS": "soon"}, check=False)
    assert bad.returncode != 0 and "PODSWEEP_HPO_LEASE_SECONDS must be a number" in bad.stderr


def test_exhausted_grid_raises_its_own_error_and_writes_nothing(tmp_path):
    s = Session(tmp_path, "e")
    got = [s.pick(dict(x=[1, 2, 3])) for _ in range(3)]
    assert got == [{"x": 1}, {"x": 2}, {"x": 3}]
    before = (tmp_path / "e" / "hpo.jsonl").read_bytes()
    s.end("finished")
    before = (tmp_path / "e" / "hpo.jsonl").read_bytes()
    with pytest.raises(hpo.NoTrialsLeft, match="all 3 configurations"):
        s.pick(dict(x=[1, 2, 3]))
    assert (tmp_path / "e" / "hpo.jsonl").read_bytes() == before
    assert issubclass(hpo.NoTrialsLeft, hpo.HPOError)


def test_a_different_grid_in_the_same_experiment_is_refused(tmp_path):
    Session(tmp_path, "e").pick(GRID)
    before = (tmp_path / "e" / "hpo.jsonl").read_bytes()
    other = Session(tmp_path, "e")
    with pytest.raises(hpo.SpaceMismatch, match="was declared with GridSearch"):
        other.pick(dict(batch_size=[32, 64], lr=[0.1]))
    with pytest.raises(hpo.SpaceMismatch):
        other.pick(GRID, hpo.Strategy.RandomSearch)
    assert (tmp_path / "e" / "hpo.jsonl").read_bytes() == before
    # the same grid with its keys in another order is the same grid
    assert other.pick(dict(lr=GRID["lr"], batch_size=GRID["batch_size"])) == \
        {"batch_size": 32, "lr": 0.1}


def test_report_checks_its_arguments_and_stores_non_finite_as_null(tmp_path):
    s = Session(tmp_path, "e")
    with pytest.raises(hpo.NotInitialized, match="before pick"):
        s.report(0, {"acc": 1})
    s.pick(dict(x=[1]))
    for epoch, metrics, message in [(-1, {"a": 1}, "epoch"), ("1", {"a": 1}, "epoch"),
                                    (1, {"a": "high"}, "must be a number"),
                                    (1, [1, 2], "dict"), (1, {2: 1.0}, "names")]:
        with pytest.raises(hpo.InvalidArgument, match=message):
            s.report(epoch, metrics)
    s.report(1, {"loss": float("nan"), "acc": 0.5, "steps": 10})
    last = events(tmp_path / "e" / "hpo.jsonl")[-1]
    assert last["metrics"] == {"loss": None, "acc": 0.5, "steps": 10}


def test_calls_before_init_say_so(tmp_path):
    out = run_py("""
        import podsweep.hpo as hpo
        for call in (lambda: hpo.pick(grid=dict(x=[1])), lambda: hpo.report(0, {}),
                     lambda: hpo.trial()):
            try:
                call()
            except hpo.NotInitialized as exc:
                print("refused:", exc)
    """, tmp_path).stdout
    assert out.count("refused: call podsweep.hpo.init(hpo_dir) first") == 3
    missing = run_py(f"""
        import podsweep.hpo as hpo
        hpo.init({str(tmp_path / "nope")!r})
    """, tmp_path, check=False)
    assert missing.returncode == 1 and "does not exist" in missing.stderr


def test_exit_marks_finished_and_an_uncaught_exception_marks_failed(tmp_path):
    code = f"""
        import podsweep.hpo as hpo
        hpo.init({str(tmp_path)!r}, experiment="e")
        config = hpo.pick(grid=dict(lr=[1, 0.1]))
        hpo.report(epoch=0, metrics={{"accuracy": 0.1}})
        if config["lr"] == 1:
            raise FloatingPointError("loss diverged")
    """
    run_py(code, tmp_path, check=False)
    run_py(code, tmp_path)
    res = hpo.results(tmp_path / "e")
    assert [(t.id, t.status) for t in res] == [(1, "failed"), (2, "finished")]
    assert res[0].error == "FloatingPointError: loss diverged"


def test_trial_directory_is_the_trials_own_and_kept_across_attempts(tmp_path):
    s = Session(tmp_path, "e")
    s.pick(dict(x=[1, 2]))
    assert s.current is not None and s.current.dir == tmp_path / "e" / "trials" / "1"
    assert s.current.resumed is False and s.current.epoch is None


def test_results_best_and_exports(tmp_path):
    s = Session(tmp_path, "e")
    for loss in (0.5, 0.2, 0.9):
        s.pick(dict(lr=[1, 0.1, 0.01]))
        s.report(0, {"loss": loss + 1, "accuracy": 1 - loss})
        s.report(1, {"loss": loss, "accuracy": 1 - loss / 2})
    s.end("finished")
    res = hpo.results(tmp_path)            # an HPO directory with one experiment
    assert len(res) == 3 and res.size == 3 and res.metrics == ["loss", "accuracy"]
    assert hpo.best(tmp_path / "e", "loss", mode="min").id == 2
    assert hpo.best(tmp_path / "e" / "hpo.jsonl", "accuracy").id == 2
    assert res.resolve_metric("loss", None) == ("loss", "min")
    csv_lines = res.to_csv().splitlines()
    assert csv_lines[0] == "trial,status,attempts,epoch,epochs,lr,loss,accuracy,error"
    assert csv_lines[2] == "2,finished,1,1,2,0.1,0.2,0.9,"
    data = json.loads(res.to_json())
    assert data["trials"][1]["reports"][1]["metrics"] == {"loss": 0.2, "accuracy": 0.9}
    with pytest.raises(hpo.InvalidArgument):
        res.best("loss", mode="lowest")


def test_results_as_a_dataframe(tmp_path):
    pd = pytest.importorskip("pandas")
    s = Session(tmp_path, "e")
    s.pick(dict(lr=[1, 0.1]))
    s.report(0, {"accuracy": 0.3})
    df = hpo.results(tmp_path / "e").to_dataframe()
    assert isinstance(df, pd.DataFrame)
    assert df.loc[1, "accuracy"] == 0.3 and df.loc[1, "status"] == "running"


def test_a_running_trial_whose_lease_ran_out_reads_as_lost(tmp_path):
    s = Session(tmp_path, "e", lease_seconds=0.2)
    s.pick(dict(x=[1, 2]))
    s._stop.set()            # silence its heartbeat, as a SIGKILL would
    time.sleep(0.5)
    assert hpo.results(tmp_path / "e")[0].status == "lost"
    assert Session(tmp_path, "e").pick(dict(x=[1, 2])) == {"x": 1}   # taken over first


def test_results_of_a_path_that_is_not_an_experiment(tmp_path):
    with pytest.raises(hpo.HPOError, match="no HPO journal"):
        hpo.results(tmp_path)
    for name in ("a", "b"):
        Session(tmp_path, name).pick(dict(x=[1]))
    with pytest.raises(hpo.HPOError, match="holds 2 experiments"):
        hpo.results(tmp_path)


def test_public_api_is_pinned():
    assert sorted(hpo.__all__) == sorted([
        "ASHA", "DEFAULT_LEASE_SECONDS", "PRUNED", "Assignment", "HPOError", "InvalidArgument",
        "InvalidSpace", "JournalError", "Median", "NoTrialsLeft", "NotInitialized", "Report",
        "Results", "Session", "SpaceMismatch", "Strategy", "Trial", "best", "finish", "init",
        "loguniform", "pick", "randint", "report", "results", "should_prune", "trial",
        "trial_dir", "uniform"])
    for name in hpo.__all__:
        assert getattr(hpo, name) is not None
