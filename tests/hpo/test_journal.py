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

from .conftest import events

GOLDEN = Path(__file__).resolve().parents[1] / "golden" / "hpo-format1.jsonl"


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


def test_writers_emit_exactly_the_golden_shapes(tmp_path):
    """Every event kind the library writes has the keys format 1 documents."""
    def shapes(path):
        out = {}
        for e in events(path):
            out.setdefault(e["event"], set()).add(tuple(sorted(e)))
        return out

    golden = shapes(GOLDEN)
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
    written = shapes(tmp_path / "e" / "hpo.jsonl")
    assert set(written) == set(golden)
    for kind, keys in written.items():
        assert keys <= golden[kind], (kind, keys, golden[kind])


def test_a_newer_format_is_refused(tmp_path):
    journal = tmp_path / "e" / "hpo.jsonl"
    journal.parent.mkdir()
    shutil.copy(GOLDEN, journal)
    data = journal.read_text().replace('"format":1', '"format":2', 1)
    journal.write_text(data)
    with pytest.raises(hpo.JournalError, match="newer"):
        hpo.results(journal)
