"""A training script whose trials get pruned, for the tests of what shows a sweep: one trial
per process, TPE with ASHA declared in the journal, as a pod runs it.

    python pruned_trainer.py HPO_DIR [EXPERIMENT] [--epochs 10]

Its accuracy depends on the trial's number, not on the configuration TPE draws, so that
run one process after another the outcome is known whatever TPE picks: trial 1 is best at
every rung and runs all its epochs; every later one is worse than trial 1 at the first rung
(epoch 1: ``ASHA(min_epoch=1)``) and is pruned there, after 2 epochs. It reports ``loss``
before ``accuracy``, so that ranking by the declared metric differs from ranking by the
first one reported.
"""

from __future__ import annotations

import argparse

import podsweep.hpo as hpo


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("hpo_dir")
    parser.add_argument("experiment", nargs="?", default=None)
    parser.add_argument("--epochs", type=int, default=10)
    args = parser.parse_args()
    hpo.init(args.hpo_dir, args.experiment)
    hpo.pick(grid=dict(lr=hpo.loguniform(1e-4, 1.0), width=[16, 32, 64]),
             strategy=hpo.Strategy.TPE, seed=0, metric="accuracy", mode="max",
             pruner=hpo.ASHA(min_epoch=1, reduction_factor=3), trials=4)
    trial = hpo.trial()
    for epoch in range(args.epochs):
        accuracy = 0.9 - 0.1 * trial.id + 0.005 * epoch
        hpo.report(epoch=epoch, metrics={"loss": 1.0 - accuracy, "accuracy": accuracy})
        if hpo.should_prune():
            print(f"pruned after epoch {epoch}", flush=True)
            break


if __name__ == "__main__":
    main()
