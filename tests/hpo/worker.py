"""A sweep worker for the tests: real processes that pick, report and get killed.

    python worker.py HPO_DIR EXPERIMENT LOG [--size N] [--reports R] [--sleep S]
                     [--lease L] [--strategy grid|random] [--hold] [--once]

Each line it writes to LOG is written after the call it records has returned:
``P trial attempt`` after pick(), ``R trial attempt epoch`` after report(). A test compares
them with the journal: everything a worker saw succeed must be there.
With --hold it reports its epochs, writes ``H`` and waits to be signalled.
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
    args = p.parse_args()

    fd = os.open(args.log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    hpo.init(args.hpo_dir, experiment=args.experiment, lease_seconds=args.lease)
    strategy = (hpo.Strategy.GridSearch if args.strategy == "grid"
                else hpo.Strategy.RandomSearch)
    while True:
        try:
            hpo.pick(grid=grid_of(args.size), strategy=strategy)
        except hpo.NoTrialsLeft:
            return
        t = hpo.trial()
        os.write(fd, f"P {t.id} {t.attempt}\n".encode())
        start = (t.epoch + 1) if t.epoch is not None else 0
        for epoch in range(start, args.reports):
            hpo.report(epoch=epoch, metrics={"score": t.id + epoch / 100})
            os.write(fd, f"R {t.id} {t.attempt} {epoch}\n".encode())
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
