"""Finding the HPO experiments a job's pods wrote to, whatever their names.

A training script takes the default experiment (``<job>-<uid>``) or names its own
(``hpo.init("/nfs/hpo", "my-sweep")``); either way its journal is
``<dir>/<experiment>/hpo.jsonl`` in a directory the job mounts. So for each volume of the
job, the experiment directories directly below its source on this host are looked at, and
one belongs to the job when

- any of its ``assign`` events was written in one of the job's pods: podsweep.hpo records
  ``"holder": {"job": <PODSWEEP_JOB_UID>, "pod": ..., "index": ...}`` there, or
- it is named ``<job>-<uid>`` (journals written before the holder field existed).

The job page and ``podsweep get`` ask again at every look, and a shared directory may hold
the experiments of many jobs; so :class:`ExperimentIndex` keeps, per journal, how far it has
read it and which jobs' pods it has seen there. A look costs a directory listing and a
``stat`` per journal, plus the bytes appended since the last look. The results of a job's
own experiments are read again only when their journal changed (or, while a trial runs, at
most every few seconds, so that a trial whose holder died shows as ``lost`` in time).

Nothing found here breaks a page: a volume that cannot be listed, a journal that cannot be
read or is not a journal becomes one line saying so (:attr:`Found.problems`,
:attr:`Experiment.error`).
"""

from __future__ import annotations

import json
import os
import stat
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..hpo import HPOError, Results, results

JOURNAL = "hpo.jsonl"
CHUNK = 1 << 20                 # bytes read at a time when scanning a journal
LIVE_RESULTS_SECONDS = 5.0      # how stale the results of an unchanged, running journal get
MAX_ENTRIES = 10_000            # journals remembered; past that the memory starts afresh


@dataclass(frozen=True)
class Experiment:
    """One experiment of a job: its journal and what could be read from it."""

    name: str
    path: Path                  # the journal, on this host
    results: Results | None     # None when it could not be read (see error)
    error: str | None = None

    def summary(self) -> dict[str, Any]:
        """What ``podsweep get`` shows: trials by status and the best one so far (by the
        metric that pick() declared, else the first one reported)."""
        out: dict[str, Any] = {"name": self.name, "path": str(self.path), "error": self.error,
                               "trials": 0, "size": None, "statuses": {}, "best": None}
        res = self.results
        if res is None:
            return out
        out.update(trials=len(res), size=res.size,
                   statuses=dict(Counter(t.status for t in res)))
        try:
            metric, mode = res.resolve_metric(None, None)
            best = res.best(metric, mode)
        except (HPOError, TypeError, ValueError):
            return out              # nothing reported yet (or nothing comparable)
        if best is not None:
            out["best"] = {"trial": best.id, "config": best.config, "metric": metric,
                           "mode": mode, "value": best.last(metric)}
        return out


@dataclass(frozen=True)
class Found:
    """A job's experiments, and the volumes that could not be searched."""

    experiments: list[Experiment]
    problems: list[str] = field(default_factory=list)

    def get(self, path: str) -> Experiment | None:
        return next((e for e in self.experiments if str(e.path) == path), None)

    def to_dict(self) -> dict[str, Any]:
        return {"experiments": [e.summary() for e in self.experiments],
                "problems": list(self.problems)}


@dataclass
class _Scan:
    """How far one journal has been read for holders, and the job uids found so far."""

    file: tuple[int, int]       # (st_dev, st_ino): a journal replaced is read afresh
    offset: int = 0             # after the last complete line read
    jobs: set[str] = field(default_factory=set)


@dataclass
class _Read:
    """The results last read from one journal, and the state of the file they reflect."""

    stamp: tuple[int, int, int, int]     # (st_dev, st_ino, st_size, st_mtime_ns)
    at: float
    results: Results | None
    error: str | None


class ExperimentIndex:
    """The experiments of each job, found under its volumes and remembered between looks.

    One per server. Not thread-safe: the server's routes run on its one event-loop thread.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._scans: dict[Path, _Scan] = {}
        self._reads: dict[Path, _Read] = {}
        # what the looks have cost so far; tests assert on these, not on time
        self.bytes_scanned = 0       # journal bytes read for holders
        self.results_read = 0        # journals read whole for their results

    def find(self, job_name: str, job_uid: str, dirs: Iterable[str]) -> Found:
        """The experiments below ``dirs`` (a job's volume sources) that the job wrote to."""
        if len(self._scans) + len(self._reads) > MAX_ENTRIES:
            self._scans.clear()
            self._reads.clear()
        default = f"{job_name}-{job_uid}"
        experiments: list[Experiment] = []
        problems: list[str] = []
        seen: set[str] = set()
        for src in dirs:
            real = os.path.realpath(src)
            if real in seen:                     # one directory mounted twice
                continue
            seen.add(real)
            try:
                names = sorted(e.name for e in os.scandir(src) if e.is_dir())
            except (FileNotFoundError, NotADirectoryError):
                continue       # not on this host (a node's path), or a file volume
            except OSError as exc:
                problems.append(f"Cannot look for HPO results in {src}: "
                                f"{exc.strerror or exc}")
                continue
            for name in names:
                journal = Path(src) / name / JOURNAL
                try:
                    st = journal.stat()
                except OSError:
                    self._forget(journal)
                    continue
                try:
                    ours = name == default or job_uid in self._holders(journal, st)
                except OSError:
                    continue   # unreadable: nothing says it is this job's
                if ours:
                    experiments.append(self._experiment(name, journal, st))
        return Found(experiments, problems)

    def _forget(self, journal: Path) -> None:
        self._scans.pop(journal, None)
        self._reads.pop(journal, None)

    def _holders(self, journal: Path, st: os.stat_result) -> set[str]:
        """The job uids of the pods that picked trials in ``journal``, read incrementally."""
        scan = self._scans.get(journal)
        if scan is None or scan.file != (st.st_dev, st.st_ino) or st.st_size < scan.offset:
            scan = self._scans[journal] = _Scan((st.st_dev, st.st_ino))
        if st.st_size == scan.offset:
            return scan.jobs
        with open(journal, "rb") as f:
            f.seek(scan.offset)
            rest = b""
            while chunk := f.read(CHUNK):
                lines = (rest + chunk).split(b"\n")
                rest = lines.pop()      # no newline yet: maybe still being written
                for line in lines:
                    scan.offset += len(line) + 1
                    self.bytes_scanned += len(line) + 1
                    uid = _holder_job(line)
                    if uid is not None:
                        scan.jobs.add(uid)
        return scan.jobs

    def _experiment(self, name: str, journal: Path, st: os.stat_result) -> Experiment:
        stamp = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
        now = self._clock()
        read = self._reads.get(journal)
        if read is None or read.stamp != stamp or (
                _running(read.results) and now - read.at > LIVE_RESULTS_SECONDS):
            read = self._reads[journal] = _Read(stamp, now, *_read_results(journal, st))
            self.results_read += 1
        return Experiment(name, journal, read.results, read.error)


def _holder_job(line: bytes) -> str | None:
    """The holder's job uid if ``line`` is an ``assign`` event that names one."""
    if b'"holder"' not in line:            # most lines: no JSON parsed at all
        return None
    try:
        event = json.loads(line)
    except ValueError:
        return None
    if not isinstance(event, dict) or event.get("event") != "assign":
        return None
    holder = event.get("holder")
    uid = holder.get("job") if isinstance(holder, dict) else None
    return uid if isinstance(uid, str) else None


def _running(res: Results | None) -> bool:
    return res is not None and any(t.status == "running" for t in res)


def _read_results(journal: Path, st: os.stat_result) -> tuple[Results | None, str | None]:
    if not stat.S_ISREG(st.st_mode):
        return None, f"Cannot read the results in {journal}: it is not a file"
    try:
        res = results(journal)
    except HPOError as exc:
        return None, f"Cannot read the results in {journal}: {exc}"
    except OSError as exc:
        return None, f"Cannot read the results in {journal}: {exc.strerror or exc}"
    if st.st_size and not res.header and not len(res):
        return None, f"Cannot read the results in {journal}: it is not an HPO journal " \
                     f"(no experiment declaration)"
    return res, None
