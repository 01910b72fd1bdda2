"""The journal file: append-only, torn tails repaired, O(new events) per call, golden format."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import podsweep.hpo as hpo
from podsweep.hpo import Session
from podsweep.hpo._journal import Reader
from podsweep.hpo._ledger import Holder, Ledger

from .conftest import events

GOLDEN = Path(__file__).resolve().parents[1] / "golden" / "hpo-format1.jsonl"
# format 1 as written since trials record their holder (a pod) and are taken over by the
# rerun of a dead holder's index; its last assign has a holder that does not parse
GOLDEN_HOLDERS = GOLDEN.with_name("hpo-format1-holders.jsonl")


def test_a_torn_last_line_is_cut_before_the_next_append(tmp_path):
    s = Session(tmp_path, "e")
    s.pick(dict(x=[1, 2, 3]))
    journal = tmp_path / "e" / "hpo.jsonl"
    with open(journal, "ab") as f:      # a writer that died in the middle of its line
        f.write(b'{"event":"report","trial":1,"att')
    assert [e["event"] for e in events(journal)] == ["experiment", "assign"]
    other = Session(tmp_path, "e")
    assert other.pick(dict(x=[1, 2, 3])) == {"x": 2}
    s.report(0, {"a": 1.0})
    lines = journal.read_bytes().split(b"\n")
    assert lines[-1] == b"" and all(json.loads(line) for line in lines[:-1])
    assert [e["event"] for e in events(journal)] == ["experiment", "assign", "assign", "report"]
    assert other._cursor.repairs == 1


def test_a_reader_leaves_a_line_without_newline_for_later(tmp_path):
    journal = tmp_path / "hpo.jsonl"
    journal.write_bytes(b'{"event":"a"}\n{"event":"b"')
    reader = Reader(journal)
    assert [e["event"] for e in reader.read_new()] == ["a"]
    with open(journal, "ab") as f:
        f.write(b'}\nnot json\n{"event":"c"}\n')
    assert [e["event"] for e in reader.read_new()] == ["b", "c"]
    assert reader.bad_lines == 1 and reader.read_new() == []


def test_each_call_reads_only_what_was_appended_since_its_last(tmp_path):
    """O(1) per call: bytes read never include history already folded, and never our own."""
    journal = tmp_path / "e" / "hpo.jsonl"
    mine = Session(tmp_path, "e")
    mine.pick(dict(i=list(range(5000))))
    mine.report(0, {"m": 0.0})
    assert mine._cursor.last_call_bytes_read == 0      # only its own appends since

    size = journal.stat().st_size
    # another process records 2,000 trials, 5 reports each
    subprocess.run([sys.executable, "-c", f"""
import podsweep.hpo as hpo
s = hpo.Session({str(tmp_path)!r}, "e")
for _ in range(2000):
    s.pick(dict(i=list(range(5000))))
    for epoch in range(5):
        s.report(epoch, {{"m": 1.0}})
s.end("finished")
"""], check=True, env={"PYTHONPATH": str(Path(hpo.__file__).parents[2])})
    appended = journal.stat().st_size - size
    mine.report(1, {"m": 0.5})
    assert mine._cursor.last_call_bytes_read == appended
    for epoch in range(2, 6):
        mine.report(epoch, {"m": 0.5})
        assert mine._cursor.last_call_bytes_read == 0
    # everything read once: the file less this process's own appends
    own = sum(len(json.dumps(e, separators=(",", ":"))) + 1 for e in events(journal)
              if e.get("trial") == 1)
    header = len(journal.read_bytes().split(b"\n", 1)[0]) + 1
    assert mine._cursor.bytes_read == journal.stat().st_size - own - header


def test_the_journal_is_only_ever_appended_to(tmp_path):
    journal = tmp_path / "e" / "hpo.jsonl"
    s = Session(tmp_path, "e")
    prefix = b""
    for i in range(30):
        if i % 5 == 0:
            s.pick(dict(x=list(range(10))))
        else:
            s.report(i, {"v": i})
        data = journal.read_bytes()
        assert data.startswith(prefix) and len(data) > len(prefix)
        prefix = data
    digest = hashlib.sha256(prefix).hexdigest()
    with pytest.raises(hpo.NoTrialsLeft):
        for _ in range(20):
            s.pick(dict(x=list(range(10))))
    assert hashlib.sha256(journal.read_bytes()[:len(prefix)]).hexdigest() == digest


def test_golden_format_1_journal_still_reads(tmp_path):
    """A journal written by format 1 (with a torn last line) reads as it always did."""
    res = hpo.results(GOLDEN)
    assert res.experiment == "hpo1-0f3a9c" and res.size == 12
    assert res.header["strategy"] == "grid"
    table = [(t.id, t.status, t.attempts, t.epoch, t.config, t.last("accuracy"), t.error)
             for t in res]
    assert table == [
        (1, "failed", 1, 0, {"batch_size": 32, "lr": 1}, 0.1, "FloatingPointError: diverged"),
        (2, "finished", 2, 2, {"batch_size": 32, "lr": 0.1}, 0.93, None),
        (3, "finished", 1, 2, {"batch_size": 32, "lr": 0.01}, 0.88, None),
        (4, "lost", 1, 0, {"batch_size": 32, "lr": 0.001}, 0.4, None),
    ]
    assert [r.attempt for r in res[1].reports] == [0, 0, 1]
    assert res.best("accuracy").id == 2


def test_format_1_with_holders_reads_and_folds(tmp_path):
    """Holders and a takeover ("holder-gone") in format 1: results and the picking fold."""
    res = hpo.results(GOLDEN_HOLDERS)
    assert res.experiment == "oom-7c1d2e" and res.size == 6
    table = [(t.id, t.status, t.attempts, t.epoch, t.worker) for t in res]
    assert table == [
        (1, "finished", 1, 1, "node-a:201"),
        (2, "finished", 2, 2, "node-a:203"),      # taken over by oom-1-1, resumed, done
        (3, "lost", 1, 0, "node-a:204"),
        (4, "lost", 1, None, "laptop:301"),        # a plain process: no holder
        (5, "lost", 1, None, "node-b:401"),        # a holder that does not parse
    ]
    assert [(r.attempt, r.epoch) for r in res[1].reports] == [(0, 0), (0, 1), (1, 2)]

    ledger = Ledger()
    for event in Reader(GOLDEN_HOLDERS).read_new():
        ledger.apply(event)
    now = 1795000003.0                             # every lease still runs
    assert ledger.held == {("7c1d2e", 2): {3: None}}
    # the rerun of index 2 takes trial 3 over; anyone else gets a fresh one
    assert ledger.next_trial(now, Holder("7c1d2e", "oom-2-1", 2)) == (3, "holder-gone")
    for other in (Holder("7c1d2e", "oom-2-0", 2), Holder("7c1d2e", "oom-3-1", 3),
                  Holder("other", "oom-2-1", 2), None):
        assert ledger.next_trial(now, other) == (6, None)


def test_writers_emit_exactly_the_golden_shapes(tmp_path, monkeypatch):
    """Every event kind the library writes has the keys format 1 documents."""
    def shapes(path):
        out = {}
        for e in events(path):
            out.setdefault(e["event"], set()).add(tuple(sorted(e)))
        return out

    golden = shapes(GOLDEN)
    for kind, keys in shapes(GOLDEN_HOLDERS).items():
        golden.setdefault(kind, set()).update(keys)
    s = Session(tmp_path, "e", lease_seconds=0.06)
    s.pick(dict(batch_size=[32], lr=[1, 0.1]))
    s.report(0, {"accuracy": 0.5})
    import time
    time.sleep(0.1)                      # let the heartbeat thread write one
    s.end("failed", error="E: x")
    s.pick(dict(batch_size=[32], lr=[1, 0.1]))
    s.end("preempted")
    s2 = Session(tmp_path, "e")
    s2.pick(dict(batch_size=[32], lr=[1, 0.1]))   # takes over the preempted trial
    s2.end("finished")
    # in pods: a holder with every assign, and a takeover by the rerun of an index
    monkeypatch.setenv("PODSWEEP_JOB_UID", "7c1d2e")
    monkeypatch.setenv("PODSWEEP_POD_INDEX", "1")
    monkeypatch.setenv("PODSWEEP_POD_NAME", "oom-1-0")
    Session(tmp_path, "p").pick(dict(batch_size=[32], lr=[1, 0.1]))
    monkeypatch.setenv("PODSWEEP_POD_NAME", "oom-1-1")
    s3 = Session(tmp_path, "p")
    s3.pick(dict(batch_size=[32], lr=[1, 0.1]))
    assert s3.current is not None and s3.current.attempt == 1
    s3.end("finished")
    written = shapes(tmp_path / "e" / "hpo.jsonl")
    for kind, keys in shapes(tmp_path / "p" / "hpo.jsonl").items():
        written.setdefault(kind, set()).update(keys)
    assert set(written) == set(golden)
    for kind, keys in written.items():
        assert keys <= golden[kind], (kind, keys, golden[kind])
    assert [e.get("reclaimed") for e in events(tmp_path / "p" / "hpo.jsonl")
            if e["event"] == "assign"] == [None, "holder-gone"]


def test_holders_come_from_the_pods_environment():
    """On every engine: the job's uid, the pod's name, and its index by either name."""
    pod = {"PODSWEEP_JOB_UID": "u1", "PODSWEEP_POD_NAME": "j-3-0"}
    assert Holder.from_env({**pod, "PODSWEEP_POD_INDEX": "3"}) == Holder("u1", "j-3-0", 3)
    assert Holder.from_env({**pod, "JOB_COMPLETION_INDEX": "3"}) == Holder("u1", "j-3-0", 3)
    for partial in ({"PODSWEEP_POD_INDEX": "3"}, {**pod}, {**pod, "PODSWEEP_POD_INDEX": "x"},
                    {"PODSWEEP_JOB_UID": "u1", "PODSWEEP_POD_INDEX": "3"}, {}):
        assert Holder.from_env(partial) is None, partial


def test_a_newer_format_is_refused(tmp_path):
    journal = tmp_path / "e" / "hpo.jsonl"
    journal.parent.mkdir()
    shutil.copy(GOLDEN, journal)
    data = journal.read_text().replace('"format":1', '"format":3', 1)
    journal.write_text(data)
    with pytest.raises(hpo.JournalError, match="newer"):
        hpo.results(journal)
