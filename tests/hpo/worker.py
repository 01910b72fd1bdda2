"""A sweep worker for the tests: real processes that pick, report and get killed.

    python worker.py HPO_DIR EXPERIMENT LOG [--size N] [--reports R] [--sleep S]
                     [--lease L] [--strategy grid|random|tpe] [--hold] [--once]
                     [--pruner asha|median] [--trials N]

Each line it writes to LOG is written after the call it records has returned:
``P trial attempt`` after pick(), ``R trial attempt epoch`` after report(). A test compares
them with the journal: everything a worker saw succeed must be there.
With --hold it reports its epochs, writes ``H`` and waits to be signalled.

With ``--strategy tpe`` or ``--trials`` the space is continuous (``x``) and a list (``c``),
and the score a known function of them that grows with the epoch, so that TPE and the
pruners have something to learn; ``X trial attempt epoch`` records a prune.
"""

from __future__ import annotations

import argparse
import os
import time

import podsweep.hpo as hpo


def grid_of(size: int) -> dict:
    # size = a * b with the a-side as large as possible below sqrt: a real 2-D grid
    a = max(d for d in range(1, int(size ** 0.5) + 1) if size % d == 0)
    return {"a": list(range(a)), "b": [i / 10 for i in range(size // a)]}


def space() -> dict:
    return {"x": hpo.uniform(0.0, 1.0), "c": [0, 1, 2, 3]}


def score(config: dict, epoch: int) -> float:
    """Best at x = 0.3, c = 2; approaches its ceiling over the epochs."""
    ceiling = 1.0 - (config["x"] - 0.3) ** 2 - 0.05 * abs(config["c"] - 2)
    return ceiling * (1.0 - 0.5 ** (epoch + 1))


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("hpo_dir")
    p.add_argument("experiment")
    p.add_argument("log")
    p.add_argument("--size", type=int, default=12)
    p.add_argument("--reports", type=int, default=5)
    p.add_argument("--sleep", type=float, default=0.0)
    p.add_argument("--lease", type=float, default=None)
    p.add_argument("--strategy", default="grid")
    p.add_argument("--hold", action="store_true")
    p.add_argument("--once", action="store_true")
    p.add_argument("--pruner", default=None)
    p.add_argument("--trials", type=int, default=None)
    args = p.parse_args()

    fd = os.open(args.log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    hpo.init(args.hpo_dir, experiment=args.experiment, lease_seconds=args.lease)
    strategy = {"grid": hpo.Strategy.GridSearch, "random": hpo.Strategy.RandomSearch,
                "tpe": hpo.Strategy.TPE}[args.strategy]
    learned = strategy is hpo.Strategy.TPE or args.trials is not None or args.pruner
    while True:
        try:
            if learned:
                hpo.pick(grid=space(), strategy=strategy, metric="score", mode="max",
                         pruner=args.pruner, trials=args.trials)
            else:
                hpo.pick(grid=grid_of(args.size), strategy=strategy)
        except hpo.NoTrialsLeft:
            return
        t = hpo.trial()
        os.write(fd, f"P {t.id} {t.attempt}\n".encode())
        start = (t.epoch + 1) if t.epoch is not None else 0
        for epoch in range(start, args.reports):
            value = score(t.config, epoch) if learned else t.id + epoch / 100
            hpo.report(epoch=epoch, metrics={"score": value})
            os.write(fd, f"R {t.id} {t.attempt} {epoch}\n".encode())
            if hpo.should_prune():
                os.write(fd, f"X {t.id} {t.attempt} {epoch}\n".encode())
                break
            if args.sleep:
                time.sleep(args.sleep)
        if args.hold:
            os.write(fd, b"H\n")
            while True:
                time.sleep(0.05)
        if args.once:
            return


if __name__ == "__main__":
    main()
