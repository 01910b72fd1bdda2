"""Finding a job's HPO experiments under its volumes: by holder or by the default name,
cheaply at every look, and with one clear line for what cannot be read.

The journals are real (written by podsweep.hpo's Session); the holder of their ``assign``
events is added by :func:`tests.holder.add_holders` where a test needs it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from podsweep.hpo import Session
from podsweep.server.experiments import LIVE_RESULTS_SECONDS, ExperimentIndex

from ..holder import add_holders

GRID = {"lr": [0.1, 0.01], "batch_size": [32, 64]}


def sweep(hpo_dir: Path, name: str, trials: int = 2, epochs: int = 2) -> Path:
    """A finished sweep of ``trials`` trials, each reporting ``epochs`` accuracies."""
    session = Session(hpo_dir, name, lease_seconds=3600)
    for t in range(trials):
        session.pick(GRID)
        for epoch in range(epochs):
            session.report(epoch, {"accuracy": 0.5 + 0.1 * t + 0.01 * epoch})
    session.end("finished")
    return session.path


def held_by(journal: Path, uid: str) -> Path:
    add_holders(journal, uid, {t: (f"pod-{t - 1}-0", t - 1) for t in range(1, 5)})
    return journal


def append(journal: Path, data: bytes) -> None:
    with open(journal, "ab") as f:
        f.write(data)


@pytest.fixture
def nfs(tmp_path: Path) -> Path:
    """A shared directory with the experiments of two jobs (uids u1 and u2)."""
    d = tmp_path / "nfs"
    d.mkdir()
    held_by(sweep(d, "my-sweep"), "u1")           # named by u1's script
    held_by(sweep(d, "their-sweep"), "u2")        # another job's
    sweep(d, "hpo1-u1")                          # u1's default name, written before holders
    sweep(d, "by-hand")                          # nobody's: no holder
    (d / "notes").mkdir()                        # not an experiment
    return d


def test_a_job_finds_every_experiment_its_pods_wrote_whatever_its_name(nfs: Path):
    found = ExperimentIndex().find("hpo1", "u1", [str(nfs)])
    assert [e.name for e in found.experiments] == ["hpo1-u1", "my-sweep"]
    assert found.problems == []
    mine = found.experiments[1]
    assert mine.path == nfs / "my-sweep" / "hpo.jsonl" and mine.error is None
    assert mine.results is not None and len(mine.results) == 2
    summary = mine.summary()
    assert summary["trials"] == 2 and summary["size"] == 4
    assert summary["statuses"] == {"finished": 2}
    assert summary["best"] == {"trial": 2, "config": {"lr": 0.1, "batch_size": 64},
                               "metric": "accuracy", "mode": "max", "value": 0.61}
    other = ExperimentIndex().find("train", "u2", [str(nfs), str(nfs)])   # mounted twice
    assert [e.name for e in other.experiments] == ["their-sweep"]
    assert ExperimentIndex().find("x", "u3", [str(nfs)]).experiments == []


def test_a_look_reads_only_what_was_appended_since_the_last(nfs: Path):
    index = ExperimentIndex()
    index.find("hpo1", "u1", [str(nfs)])
    # each journal not named after the job is scanned once for holders; the job's two
    # experiments are read for their results
    named = ("my-sweep", "their-sweep", "by-hand")
    assert index.bytes_scanned == sum((nfs / n / "hpo.jsonl").stat().st_size for n in named)
    assert index.results_read == 2
    scanned = index.bytes_scanned
    index.find("hpo1", "u1", [str(nfs)])
    assert (index.bytes_scanned, index.results_read) == (scanned, 2)

    line = b'{"event":"heartbeat","trial":1,"attempt":0,"time":1}\n'
    append(nfs / "their-sweep" / "hpo.jsonl", line)     # another job's sweep goes on
    index.find("hpo1", "u1", [str(nfs)])
    assert (index.bytes_scanned, index.results_read) == (scanned + len(line), 2)

    append(nfs / "my-sweep" / "hpo.jsonl", line)        # this job's does
    index.find("hpo1", "u1", [str(nfs)])
    assert (index.bytes_scanned, index.results_read) == (scanned + 2 * len(line), 3)


def test_a_line_still_being_written_counts_once_it_is_whole(nfs: Path):
    index = ExperimentIndex()
    journal = nfs / "by-hand" / "hpo.jsonl"
    assign = json.loads(journal.read_text().splitlines()[1])
    assert assign["event"] == "assign"
    line = json.dumps({**assign, "attempt": 1, "holder": {"job": "u3", "pod": "p-0-1",
                                                          "index": 0}}).encode()
    append(journal, line[:40])
    assert index.find("job", "u3", [str(nfs)]).experiments == []
    append(journal, line[40:] + b"\n")
    assert [e.name for e in index.find("job", "u3", [str(nfs)]).experiments] == ["by-hand"]


def test_a_journal_replaced_by_another_is_read_afresh(nfs: Path, tmp_path: Path):
    index = ExperimentIndex()
    assert index.find("job", "u4", [str(nfs)]).experiments == []
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    fresh = held_by(sweep(elsewhere, "their-sweep", trials=1), "u4")   # a shorter file
    os.replace(fresh, nfs / "their-sweep" / "hpo.jsonl")
    found = index.find("job", "u4", [str(nfs)])
    assert [e.name for e in found.experiments] == ["their-sweep"]
    assert found.experiments[0].results is not None
    assert len(found.experiments[0].results) == 1


def test_results_with_a_running_trial_are_read_again_after_a_while(tmp_path: Path):
    now = [1000.0]
    index = ExperimentIndex(clock=lambda: now[0])
    session = Session(tmp_path, "hpo1-u1", lease_seconds=3600)   # no heartbeat meanwhile
    try:
        session.pick(GRID)
        session.report(0, {"accuracy": 0.5})
        first = index.find("hpo1", "u1", [str(tmp_path)]).experiments[0]
        assert first.results is not None and first.results[0].status == "running"
        now[0] += LIVE_RESULTS_SECONDS / 2
        index.find("hpo1", "u1", [str(tmp_path)])
        assert index.results_read == 1
        # unchanged, but its holder may have died meanwhile: read again to say so in time
        now[0] += LIVE_RESULTS_SECONDS
        index.find("hpo1", "u1", [str(tmp_path)])
        assert index.results_read == 2
    finally:
        session.end("finished")
    index.find("hpo1", "u1", [str(tmp_path)])
    now[0] += 10 * LIVE_RESULTS_SECONDS
    done = index.find("hpo1", "u1", [str(tmp_path)]).experiments[0]
    assert index.results_read == 3                     # finished: read once more, then kept
    assert done.results is not None and done.results[0].status == "finished"


def test_what_cannot_be_read_is_one_line_each_and_the_rest_still_shows(
        nfs: Path, tmp_path: Path):
    loop = tmp_path / "loop"
    loop.symlink_to(loop)                    # unreadable whoever runs the test (root too)
    a_file = tmp_path / "a-file"
    a_file.write_text("a volume may be a file")
    bad = {name: tmp_path / name / "hpo1-u1" for name in ("garbage", "newer", "folder")}
    for d in bad.values():
        d.mkdir(parents=True)
    (bad["garbage"] / "hpo.jsonl").write_text("this is not JSON\n{nor this\n")
    lines = sweep(tmp_path, "elsewhere").read_text().splitlines()
    (bad["newer"] / "hpo.jsonl").write_text("\n".join(
        [json.dumps({**json.loads(lines[0]), "format": 99}), *lines[1:]]) + "\n")
    (bad["folder"] / "hpo.jsonl").mkdir()

    dirs = [str(loop), str(tmp_path / "missing"), str(a_file),
            *(str(d.parent) for d in bad.values()), str(nfs)]
    found = ExperimentIndex().find("hpo1", "u1", dirs)
    assert found.problems == [f"Cannot look for HPO results in {loop}: "
                              f"Too many levels of symbolic links"]
    assert [(e.path.parent.parent.name, e.name) for e in found.experiments] == [
        ("garbage", "hpo1-u1"), ("newer", "hpo1-u1"), ("folder", "hpo1-u1"),
        ("nfs", "hpo1-u1"), ("nfs", "my-sweep")]
    errors = [e.error for e in found.experiments]
    journal = {name: d / "hpo.jsonl" for name, d in bad.items()}
    assert errors[0] == (f"Cannot read the results in {journal['garbage']}: it is not an "
                         f"HPO journal (no experiment declaration)")
    assert errors[1] is not None and errors[1].startswith(
        f"Cannot read the results in {journal['newer']}: journal format 99 is newer")
    assert errors[2] == (f"Cannot read the results in {journal['folder']}: it is not "
                         f"a file")
    assert errors[3:] == [None, None]
    assert all(e.results is None for e in found.experiments[:3])
    summary = found.to_dict()
    assert summary["problems"] == found.problems
    assert summary["experiments"][0] == {
        "name": "hpo1-u1", "path": str(journal["garbage"]), "error": errors[0], "trials": 0,
        "size": None, "statuses": {}, "best": None}
    assert summary["experiments"][4]["best"]["trial"] == 2
