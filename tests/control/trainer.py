"""A small sweep script for the pod-death tests: one trial per pod, a checkpoint per epoch.

    python trainer.py HPO_DIR MARKS [--epochs 6] [--epoch-seconds 0.3] [--grid 6]

Like the walk-through's script it does not catch NoTrialsLeft. After each epoch it writes
its checkpoint, reports, and prints ``epoch N done``; a resumed trial starts after its
checkpoint's epoch and says so. Each pod writes ``MARKS/<pod>.pid`` ("pid start-time")
before anything else, and a rerun first looks whether an earlier pod of its index is still
alive: it prints ``predecessor <pod> still alive`` if one is (the engine promised not).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import podsweep.hpo as hpo

CONFIGS = dict(lr=[0.1, 0.01, 0.001], width=[64, 128])


def start_time(pid: int) -> str | None:
    """The start time of a live process (zombies are dead), None if there is none."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = raw[raw.rindex(")") + 2:].split()
    return None if fields[0] in ("Z", "X") else fields[19]


def check_predecessors(marks: Path, me: str) -> None:
    job, index, _ = me.rsplit("-", 2)
    for mark in sorted(marks.glob(f"{job}-{index}-*.pid")):
        if mark.stem != me:
            pid, started = mark.read_text().split()
            if start_time(int(pid)) == started:
                print(f"predecessor {mark.stem} still alive", flush=True)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("hpo_dir")
    p.add_argument("marks", type=Path)
    p.add_argument("--epochs", type=int, default=6)
    p.add_argument("--epoch-seconds", type=float, default=0.3)
    p.add_argument("--grid", type=int, default=6, help="use the first N configurations")
    args = p.parse_args()

    me = os.environ["PODSWEEP_POD_NAME"]
    check_predecessors(args.marks, me)
    (args.marks / f"{me}.pid").write_text(f"{os.getpid()} {start_time(os.getpid())}")

    grid = dict(CONFIGS)
    if args.grid == 2:
        grid["lr"] = [0.1]
    elif args.grid != 6:
        raise SystemExit("--grid must be 2 or 6")
    hpo.init(args.hpo_dir)
    config = hpo.pick(grid=grid, strategy=hpo.Strategy.GridSearch)
    trial = hpo.trial()
    checkpoint = hpo.trial_dir() / "checkpoint.json"
    first = 0
    if trial.resumed and checkpoint.exists():
        done = json.loads(checkpoint.read_text())["epoch"]
        print(f"Resuming from checkpoint after epoch {done}", flush=True)
        first = done + 1
    for epoch in range(first, args.epochs):
        time.sleep(args.epoch_seconds)
        accuracy = 1 - config["lr"] / (epoch + 1) - 1 / config["width"]
        tmp = checkpoint.with_name(f".{checkpoint.name}.{os.getpid()}")
        tmp.write_text(json.dumps({"epoch": epoch, "accuracy": accuracy}))
        os.replace(tmp, checkpoint)
        hpo.report(epoch=epoch, metrics={"accuracy": accuracy})
        print(f"epoch {epoch} done", flush=True)


if __name__ == "__main__":
    main()
