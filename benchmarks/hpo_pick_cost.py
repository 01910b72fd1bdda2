"""What a TPE pick costs as the sweep grows: podsweep.hpo against Optuna's TPESampler.

For each history size n (10, 100, 1,000, 10,000 ended trials of a 2-parameter space, one
continuous and one list), side by side in one run:

- podsweep: a Session on a real journal holding the n trials, caught up once (the first
  pick of a process reads the whole file: that cost is printed apart), then the median of
  20 pick + report + finish cycles;
- Optuna: a study in memory (its fastest storage) holding the same n trials, then the
  median of 20 ask + suggest + tell cycles with TPESampler (multivariate, its default).

    python benchmarks/hpo_pick_cost.py          # n up to 10,000
    python benchmarks/hpo_pick_cost.py --quick  # n up to 1,000

The ratio is Optuna's time over podsweep's: above 1, podsweep's pick is cheaper.
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import podsweep.hpo as hpo

ROUNDS = 20
CHOICES = [16, 32, 64, 128]


def history(n: int) -> list[tuple[float, int, float]]:
    rng = random.Random(n)
    return [(rng.uniform(1e-4, 1.0), rng.choice(CHOICES), rng.random()) for _ in range(n)]


def write_journal(path: Path, trials: list[tuple[float, int, float]]) -> None:
    space = {"lr": {"dist": "loguniform", "low": 1e-4, "high": 1.0}, "width": CHOICES}
    lines = [{"event": "experiment", "format": 2, "name": "bench", "strategy": "tpe",
              "seed": 0, "space": space, "size": None, "metric": "acc", "mode": "max",
              "pruner": None, "trials": None, "time": 1.0}]
    for t, (lr, width, acc) in enumerate(trials, start=1):
        lines += [{"event": "assign", "trial": t, "attempt": 0, "worker": "w", "lease": 60,
                   "config": {"lr": lr, "width": width}, "time": 1.0},
                  {"event": "report", "trial": t, "attempt": 0, "epoch": 0,
                   "metrics": {"acc": acc}, "time": 1.0},
                  {"event": "finished", "trial": t, "attempt": 0, "time": 1.0}]
    path.parent.mkdir(parents=True)
    path.write_text("".join(json.dumps(e) + "\n" for e in lines))


def median_ms(step: Callable[[], Any]) -> float:
    times = []
    for _ in range(ROUNDS):
        start = time.perf_counter()
        step()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def podsweep_point(n: int, root: Path) -> tuple[float, float]:
    write_journal(root / "bench" / "hpo.jsonl", history(n))
    session = hpo.Session(root, "bench")
    space = {"lr": hpo.loguniform(1e-4, 1.0), "width": CHOICES}
    rng = random.Random(0)

    def cycle() -> None:
        session.pick(space, hpo.Strategy.TPE, 0, metric="acc", mode="max")
        session.report(0, {"acc": rng.random()})
        session.end("finished")

    start = time.perf_counter()
    cycle()                                   # the first pick reads the whole journal
    first = (time.perf_counter() - start) * 1000
    return first, median_ms(cycle)


def optuna_point(n: int) -> float:
    import optuna
    from optuna.distributions import CategoricalDistribution, FloatDistribution

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    dists = {"lr": FloatDistribution(1e-4, 1.0, log=True),
             "width": CategoricalDistribution(CHOICES)}
    study = optuna.create_study(direction="maximize",
                                sampler=optuna.samplers.TPESampler(seed=0))
    study.add_trials([optuna.trial.create_trial(params={"lr": lr, "width": width},
                                                distributions=dists, value=acc)
                      for lr, width, acc in history(n)])
    rng = random.Random(0)

    def cycle() -> None:
        trial = study.ask()
        trial.suggest_float("lr", 1e-4, 1.0, log=True)
        trial.suggest_categorical("width", CHOICES)
        study.tell(trial, rng.random())

    return median_ms(cycle)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="n up to 1,000")
    args = parser.parse_args()
    logging.getLogger("podsweep.hpo").setLevel(logging.WARNING)
    sizes = (10, 100, 1000) if args.quick else (10, 100, 1000, 10_000)
    print("| ended trials | podsweep pick | podsweep first pick (reads the journal) "
          "| Optuna ask+tell | Optuna / podsweep |")
    print("|---|---|---|---|---|")
    for n in sizes:
        with tempfile.TemporaryDirectory() as tmp:
            first, steady = podsweep_point(n, Path(tmp))
        theirs = optuna_point(n)
        print(f"| {n:,} | {steady:.2f} ms | {first:.1f} ms | {theirs:.2f} ms "
              f"| {theirs / steady:.1f}x |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
