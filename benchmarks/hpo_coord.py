"""HPO coordination through a shared directory: podsweep.hpo against runai.hpo and Optuna.

The same workload on each, side by side in one run: W worker processes share one directory
and sweep a T-point grid; per trial a worker picks a configuration, reports 5 times and
finishes (Optuna: ask + suggest, 5 x report, tell; runai.hpo has no finish call). Printed per
point: trials per second, p50/p99 latency of pick and report, how the latency of the last
10% of calls compares with the first 10%, duplicates and lost reports, and podsweep's
throughput as a multiple of each baseline's.

    python benchmarks/hpo_coord.py            # short matrix (a few minutes)
    python benchmarks/hpo_coord.py --full     # W = 4, 16, 64; T = 100, 1,000, 10,000; 100,000

A system that cannot finish a point within the cap (--cap: 30 s, or 300 s with --full) is
stopped there: its numbers are for the trials done so far, marked "capped". With --full its
larger points are then skipped, and said so.
"""

from __future__ import annotations

import argparse
import json
import logging
import multiprocessing as mp
import os
import pickle
import shutil
import statistics
import sys
import tempfile
import time
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

REPORTS = 5
PICK, REPORT, FINISH = 0, 1, 2
SYSTEMS = ("podsweep", "runai", "optuna")


def grid(trials: int) -> dict[str, list[Any]]:
    a = 10 if trials >= 100 else 1
    return {"a": list(range(a)), "b": [i / 1000 for i in range(trials // a)]}


# ------------------------------------------------------------------ workers (in children)

class Recorder:
    def __init__(self) -> None:
        self.calls: list[tuple[float, int, float]] = []
        self.configs: list[tuple[Any, ...]] = []
        self.reports = 0
        self.trials = 0
        self.capped = False
        self.error = ""

    def timed(self, op: int, fn: Callable[[], Any]) -> Any:
        t0 = time.perf_counter()
        out = fn()
        self.calls.append((t0, op, time.perf_counter() - t0))
        return out


def podsweep_worker(root: Path, trials: int, deadline: float, rec: Recorder) -> None:
    import podsweep.hpo as hpo

    logging.getLogger("podsweep.hpo").disabled = True
    hpo.init(root, experiment="bench")
    space = grid(trials)
    while time.perf_counter() < deadline:
        try:
            config = rec.timed(PICK, lambda: hpo.pick(grid=space))
        except hpo.NoTrialsLeft:
            break
        rec.configs.append(tuple(config.values()))
        for epoch in range(REPORTS):
            rec.timed(REPORT, lambda e=epoch: hpo.report(epoch=e, metrics={"acc": e / 10}))
            rec.reports += 1
        rec.timed(FINISH, hpo.finish)
        rec.trials += 1


def runai_worker(root: Path, trials: int, deadline: float, rec: Recorder) -> None:
    import runai.hpo

    logging.disable(logging.CRITICAL)
    runai.hpo.init(str(root))
    space = grid(trials)
    while time.perf_counter() < deadline:
        try:
            config = rec.timed(PICK, lambda: runai.hpo.pick(
                grid=space, strategy=runai.hpo.Strategy.GridSearch))
        except AssertionError:     # runai.hpo's way of saying the grid is exhausted
            break
        rec.configs.append(tuple(config.values()))
        for epoch in range(REPORTS):
            rec.timed(REPORT, lambda e=epoch: runai.hpo.report(epoch=e,
                                                               metrics={"acc": e / 10}))
            rec.reports += 1
        rec.trials += 1


def optuna_storage(root: Path) -> Any:
    import optuna
    from optuna.storages.journal import JournalFileBackend

    return optuna.storages.JournalStorage(JournalFileBackend(str(root / "optuna.log")))


def optuna_worker(root: Path, trials: int, deadline: float, rec: Recorder) -> None:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    space = grid(trials)
    study = optuna.load_study(study_name="bench", storage=optuna_storage(root),
                              sampler=optuna.samplers.GridSampler(space))

    def ask() -> Any:
        trial = study.ask()
        return trial, {k: trial.suggest_categorical(k, v) for k, v in space.items()}

    def tell(trial: Any, **state: Any) -> None:
        try:
            study.tell(trial, None if state else REPORTS / 10, **state)
        except RuntimeError as exc:
            # GridSampler calls study.stop() once the grid is used up, which Optuna refuses
            # outside optimize(); the trial's state is stored before that (a finally).
            if "Study.stop" not in str(exc):
                raise

    while time.perf_counter() < deadline:
        try:
            trial, config = rec.timed(PICK, ask)
        except RuntimeError as exc:
            if "Study.stop" in str(exc):   # the same, raised when the grid is used up
                break
            raise
        if trial.number >= trials:   # the grid is used up; Optuna would sample again
            tell(trial, state=optuna.trial.TrialState.FAIL)
            break
        rec.configs.append(tuple(config.values()))
        for epoch in range(REPORTS):
            rec.timed(REPORT, lambda e=epoch, t=trial: t.report(e / 10, e))
            rec.reports += 1
        rec.timed(FINISH, lambda t=trial: tell(t))
        rec.trials += 1


WORKERS = {"podsweep": podsweep_worker, "runai": runai_worker, "optuna": optuna_worker}


def child(system: str, root: Path, trials: int, cap: float, barrier: Any, out: Path) -> None:
    rec = Recorder()
    barrier.wait()
    deadline = time.perf_counter() + cap
    try:
        WORKERS[system](root, trials, deadline, rec)
    except Exception as exc:   # a baseline's own failure is a result: count it, say it
        rec.error = f"{type(exc).__name__}: {exc}"
    finally:
        rec.capped = time.perf_counter() >= deadline
        out.write_bytes(pickle.dumps(rec.__dict__))
        os._exit(0)   # skip atexit hooks of the libraries: they are not part of the race


# ------------------------------------------------------------------ the parent

def stored_reports(system: str, root: Path) -> int:
    """Reports the storage holds after the run (to count lost ones)."""
    if system == "podsweep":
        import podsweep.hpo as hpo

        return sum(len(t.reports) for t in hpo.results(root / "bench"))
    if system == "runai":
        import yaml

        data = yaml.safe_load((root / "runai.yaml").read_text()) or {}
        return sum(len(e.get("reports", [])) for e in data.get("experiments", []))
    import optuna

    study = optuna.load_study(study_name="bench", storage=optuna_storage(root))
    return sum(len(t.intermediate_values) for t in study.get_trials(deepcopy=False))


@dataclass
class Point:
    system: str
    workers: int
    trials: int
    done: int
    seconds: float
    capped: bool
    trials_per_s: float
    pick_p50_ms: float
    pick_p99_ms: float
    report_p50_ms: float
    report_p99_ms: float
    drift: float          # p50 of the last 10% of calls / p50 of the first 10%
    duplicates: int
    lost_reports: int
    errors: list[str]


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))] * 1000


def run_point(system: str, workers: int, trials: int, cap: float) -> Point:
    root = Path(tempfile.mkdtemp(prefix=f"bench-{system}-"))
    try:
        if system == "optuna":
            import optuna

            optuna.logging.set_verbosity(optuna.logging.ERROR)
            optuna.create_study(study_name="bench", storage=optuna_storage(root),
                                sampler=optuna.samplers.GridSampler(grid(trials)))
        ctx = mp.get_context("fork")
        barrier = ctx.Barrier(workers + 1)
        outs = [root / f"rec-{i}.pickle" for i in range(workers)]
        procs = [ctx.Process(target=child, args=(system, root, trials, cap, barrier, out))
                 for out in outs]
        for p in procs:
            p.start()
        barrier.wait()
        t0 = time.perf_counter()
        for p in procs:
            p.join()
        seconds = time.perf_counter() - t0
        recs = [pickle.loads(o.read_bytes()) for o in outs if o.exists()]
        calls = sorted(c for r in recs for c in r["calls"])
        done = sum(r["trials"] for r in recs)
        reports = sum(r["reports"] for r in recs)
        configs = Counter(c for r in recs for c in r["configs"])
        tenth = max(1, len(calls) // 10)
        first = statistics.median(c[2] for c in calls[:tenth]) if calls else float("nan")
        last = statistics.median(c[2] for c in calls[-tenth:]) if calls else float("nan")
        return Point(
            system, workers, trials, done, round(seconds, 2), any(r["capped"] for r in recs),
            round(done / seconds, 2),
            pct([c[2] for c in calls if c[1] == PICK], 0.5),
            pct([c[2] for c in calls if c[1] == PICK], 0.99),
            pct([c[2] for c in calls if c[1] == REPORT], 0.5),
            pct([c[2] for c in calls if c[1] == REPORT], 0.99),
            round(last / first, 2),
            sum(n - 1 for n in configs.values() if n > 1),
            reports - stored_reports(system, root),
            [r["error"] for r in recs if r["error"]],
        )
    finally:
        shutil.rmtree(root, ignore_errors=True)


def fmt(p: Point, base: Point | None) -> str:
    ratio = "" if base is None or p.system == "podsweep" or not p.trials_per_s else \
        f"{base.trials_per_s / p.trials_per_s:,.0f}x"
    done = f"{p.done}/{p.trials}" + (" capped" if p.capped else "")
    return (f"| {p.system} | {p.workers} | {p.trials:,} | {done} | {p.trials_per_s:,.1f} | "
            f"{p.pick_p50_ms:.2f} / {p.pick_p99_ms:.2f} | "
            f"{p.report_p50_ms:.2f} / {p.report_p99_ms:.2f} | {p.drift:.2f} | "
            f"{p.duplicates} | {p.lost_reports} | {ratio} |")


HEADER = ("| system | W | T | done | trials/s | pick p50 / p99 ms | report p50 / p99 ms | "
          "last/first 10% | dups | lost reports | podsweep is |\n"
          "|---|---|---|---|---|---|---|---|---|---|---|")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--full", action="store_true", help="the whole matrix")
    parser.add_argument("--cap", type=float, help="seconds a point may take (default: 30, "
                                                  "300 with --full)")
    parser.add_argument("--systems", default=",".join(SYSTEMS))
    parser.add_argument("--out", default="benchmarks/results/hpo_coord.json")
    args = parser.parse_args()
    cap = args.cap or (300.0 if args.full else 30.0)
    systems = [s for s in args.systems.split(",") if s]
    if args.full:
        matrix = [(w, t) for w in (4, 16, 64) for t in (100, 1000, 10000)]
        extra = [(16, 100_000)]
    else:
        matrix = [(4, 100), (16, 100), (16, 1000)]
        extra = [(16, 10_000)]
    print(f"HPO coordination benchmark: {', '.join(systems)}; {REPORTS} reports a trial; "
          f"cap {cap:.0f} s a point; {os.cpu_count()} CPUs; Python {sys.version.split()[0]}",
          flush=True)
    points: list[Point] = []
    capped_at: dict[tuple[str, int], int] = {}
    notes: list[str] = []
    print(HEADER, flush=True)
    for workers, trials in matrix + [(w, t) for w, t in extra]:
        only_podsweep = (workers, trials) in extra
        base: Point | None = None
        for system in systems:
            if only_podsweep and system != "podsweep":
                continue
            if args.full and capped_at.get((system, workers), trials + 1) < trials:
                print(f"| {system} | {workers} | {trials:,} | skipped: did not finish "
                      f"{capped_at[(system, workers)]:,} trials within {cap:.0f} s "
                      f"| | | | | | | |", flush=True)
                continue
            point = run_point(system, workers, trials, cap)
            if point.capped:
                capped_at[(system, workers)] = trials
            if system == "podsweep":
                base = point
            points.append(point)
            print(fmt(point, base), flush=True)
            for error, n in Counter(point.errors).items():
                notes.append(f"{system} W={workers} T={trials:,}: {n} worker(s) died of {error}")
    for note in notes:
        print(f"- {note}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps([asdict(p) for p in points], indent=2))
    print(f"\n'podsweep is' = podsweep's trials/s divided by the system's, same W and T, "
          f"this run. Results: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
