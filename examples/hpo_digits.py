"""The walk-through's HPO sample, made real: grid search over batch size and learning rate.

Each process (pod) picks one configuration from the shared HPO directory, trains a small
neural network with SGD on scikit-learn's digits data set (shipped with it: no download),
reports validation accuracy every epoch, and checkpoints every epoch into its trial's
directory, so that a preempted trial resumes where it stopped.

    python examples/hpo_digits.py --hpo-dir /nfs/hpo         # one trial
    podsweep submit hpo1 -g 1 --parallelism 3 --completions 12 -v /nfs:/nfs/hpo \\
        -- python examples/hpo_digits.py                       # the whole sweep

With ``--strategy tpe`` it searches a wider space (the learning rate on a log scale, the
width of the hidden layer, the batch size) with a tree-structured Parzen estimator, and
``--prune asha`` (or ``median``) stops trials that fall behind, at a rung, the others at the
same epoch: their pods exit 0 and their GPUs go to the next trial.

    podsweep submit hpo2 -g 1 --parallelism 4 --completions 40 -v /nfs:/nfs/hpo \\
        -- python examples/hpo_digits.py --strategy tpe --prune asha --epochs 20
"""

from __future__ import annotations

import argparse
import os

# One thread per process: on a small machine, several pods with a thread per core each
# turn a sweep of seconds into minutes. Set before numpy is imported.
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", os.environ["OMP_NUM_THREADS"])

import pickle
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.datasets import load_digits
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import train_test_split
from sklearn.neural_network import MLPClassifier

import podsweep.hpo as hpo

GRID = dict(batch_size=[32, 64, 128], lr=[1, 0.1, 0.01, 0.001])
# The space for random search and TPE: a range for the learning rate, lists for the rest.
SPACE = dict(lr=hpo.loguniform(1e-4, 1.0), width=[16, 32, 64, 128], batch_size=[32, 64, 128])
STRATEGIES = {"grid": hpo.Strategy.GridSearch, "random": hpo.Strategy.RandomSearch,
              "tpe": hpo.Strategy.TPE}


def load_data() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    digits = load_digits()
    x = digits.data / 16.0
    return train_test_split(x, digits.target, test_size=0.2, random_state=0,
                            stratify=digits.target)


def save_checkpoint(path: Path, model: MLPClassifier, epoch: int) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(pickle.dumps({"epoch": epoch, "model": model}))
    os.replace(tmp, path)    # a preemption mid-write never leaves a half checkpoint


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hpo-dir", default=os.environ.get("HPO_DIR", "/nfs/hpo"))
    parser.add_argument("--experiment", default=None,
                        help="the experiment's name (default: the job's name and uid)")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--epoch-seconds", type=float, default=0.0,
                        help="extra time per epoch, to watch a sweep (and preempt it)")
    parser.add_argument("--strategy", choices=list(STRATEGIES), default="grid",
                        help="grid walks the walk-through's 12 points; random and tpe "
                             "search a wider space")
    parser.add_argument("--prune", choices=["asha", "median", "none"], default="none",
                        help="stop trials that fall behind the others early")
    parser.add_argument("--trials", type=int, default=None,
                        help="trials to hand out (default: 40 for random and tpe; grid: "
                             "every point once)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    hpo.init(args.hpo_dir, args.experiment)
    kwargs: dict[str, Any] = {}
    if args.strategy != "grid" or args.prune != "none":
        # declared in the journal: every pod ranks and prunes by the same metric
        kwargs.update(metric="accuracy", mode="max",
                      pruner=None if args.prune == "none" else args.prune)
    if args.strategy != "grid":
        kwargs["trials"] = args.trials if args.trials is not None else 40
    elif args.trials is not None:
        kwargs["trials"] = args.trials
    try:
        config = hpo.pick(grid=GRID if args.strategy == "grid" else SPACE,
                          strategy=STRATEGIES[args.strategy], seed=args.seed, **kwargs)
    except hpo.NoTrialsLeft as exc:   # more pods than configurations: nothing left to do
        print(f"Nothing to do: {exc}", flush=True)
        return
    trial = hpo.trial()

    x_train, x_val, y_train, y_val = load_data()
    classes = np.unique(y_train)
    checkpoint = hpo.trial_dir() / "checkpoint.pkl"
    first_epoch = 0
    if trial.resumed and checkpoint.exists():
        state = pickle.loads(checkpoint.read_bytes())
        model, first_epoch = state["model"], state["epoch"] + 1
        print(f"Resuming from checkpoint {checkpoint} after epoch {state['epoch']}",
              flush=True)
    else:
        model = MLPClassifier(hidden_layer_sizes=(config.get("width", 64),), solver="sgd",
                              momentum=0.0,
                              learning_rate_init=config["lr"],
                              batch_size=config["batch_size"], random_state=trial.id)

    for epoch in range(first_epoch, args.epochs):
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore", ConvergenceWarning)
            warnings.simplefilter("ignore", RuntimeWarning)
            # one pass over the shuffled training set in minibatches of batch_size
            model.partial_fit(x_train, y_train, classes=classes)
            accuracy = float(model.score(x_val, y_val))
        if args.epoch_seconds:
            time.sleep(args.epoch_seconds)
        save_checkpoint(checkpoint, model, epoch)
        hpo.report(epoch=epoch, metrics={"accuracy": accuracy})
        print(f"epoch {epoch}: validation accuracy {accuracy:.4f}", flush=True)
        if hpo.should_prune():      # the trial is recorded pruned; the pod exits 0
            print(f"Pruned after epoch {epoch}: behind the other trials at this epoch",
                  flush=True)
            break


if __name__ == "__main__":
    main()
