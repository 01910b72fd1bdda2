"""Sample efficiency of podsweep.hpo's search and pruning, side by side with grid, random and
Optuna: how many epochs each needs for how good a configuration.

Each task trains a small scikit-learn model epoch by epoch (``partial_fit``) on a data set
that ships with scikit-learn or is generated (no download) and reports validation accuracy
after every epoch, for up to 20 epochs a trial. Every arm gets the same 40 trials and the
same 2 workers, over several seeds:

    grid                  podsweep GridSearch over a grid of at most 40 points (no seed)
    random                podsweep RandomSearch
    podsweep TPE          podsweep TPE, no pruner
    podsweep TPE+ASHA     podsweep TPE, pruner="asha" (reduction factor 4)
    podsweep TPE+ASHA η=3 podsweep TPE, pruner=hpo.ASHA(reduction_factor=3)
    podsweep TPE+median   podsweep TPE, pruner="median"
    Optuna TPE            TPESampler(seed, constant_liar=True), no pruner
    Optuna TPE+SHA        the same with SuccessiveHalvingPruner()
    Optuna TPE+Hyperband  the same with HyperbandPruner()

The two workers are simulated in one process, deterministically: each trains one epoch per
unit of simulated time, and the next event is always the worker whose epoch ends first (the
lower worker first on a tie). So a worker picks its next trial while the other's is still
running, as two pods do; that is what a constant liar is for. podsweep's arms use two
``hpo.Session`` objects on one real journal in a temporary directory (real file, real locks);
Optuna's use one in-memory study through ask / report / should_prune / tell.

Learning curves are cached by (task, configuration), and a model's seed is fixed per
configuration, so the same configuration gives the same curve in every arm and is trained
once (the grid arm is then the same for every seed).

Reported per task and arm, as medians over seeds: the best accuracy (the largest of the
trials' last reported values), the epochs used (every epoch trained), and the epochs used
until the best so far (the largest latest value of any trial, finished or not) came within
0.5 points of that run's final best and stayed there. Then the issue's acceptance check:
TPE+ASHA uses at most half random search's epochs for a best accuracy within a point of it.

    python benchmarks/hpo_efficiency.py           # 3 tasks, 5 seeds (~5 min of CPU)
    python benchmarks/hpo_efficiency.py --quick   # 2 tasks, 2 seeds: a smoke run (~1 min)

Raw results go to benchmarks/results/hpo_efficiency-<time>.json.
"""

from __future__ import annotations

import os

# One thread per process, as in examples/hpo_digits.py: these models are tiny, and BLAS
# threads only fight over 2 cores. Set before numpy is imported.
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", os.environ["OMP_NUM_THREADS"])

import argparse
import hashlib
import heapq
import json
import logging
import platform
import shutil
import statistics
import sys
import tempfile
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
from sklearn.datasets import load_digits, make_classification, make_hastie_10_2
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import SGDClassifier
from sklearn.model_selection import train_test_split
from sklearn.neural_network import MLPClassifier
from sklearn.preprocessing import StandardScaler

import podsweep.hpo as hpo

EPOCHS = 20
TRIALS = 40
WORKERS = 2
WITHIN = 0.005          # 0.5 points of accuracy
HAS_TPE = hasattr(hpo.Strategy, "TPE")

ROOT = Path(__file__).resolve().parent
RESULTS = ROOT / "results"


# ------------------------------------------------------------------ search spaces

@dataclass(frozen=True)
class Param:
    """One parameter, said once and spoken to podsweep and Optuna each in its own terms."""

    name: str
    kind: str                        # "log" | "uniform" | "int" | "cat"
    low: float = 0.0
    high: float = 0.0
    choices: Tuple[Any, ...] = ()

    def podsweep(self) -> Any:
        if self.kind == "log":
            return hpo.loguniform(self.low, self.high)
        if self.kind == "uniform":
            return hpo.uniform(self.low, self.high)
        if self.kind == "int":
            return hpo.randint(int(self.low), int(self.high))
        return list(self.choices)

    def optuna(self, trial: Any) -> Any:
        if self.kind == "log":
            return trial.suggest_float(self.name, self.low, self.high, log=True)
        if self.kind == "uniform":
            return trial.suggest_float(self.name, self.low, self.high)
        if self.kind == "int":
            return trial.suggest_int(self.name, int(self.low), int(self.high))
        return trial.suggest_categorical(self.name, list(self.choices))


def log(name: str, low: float, high: float) -> Param:
    return Param(name, "log", low, high)


def cat(name: str, *choices: Any) -> Param:
    return Param(name, "cat", choices=tuple(choices))


# ------------------------------------------------------------------ tasks

Data = Tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]


@dataclass
class Task:
    name: str
    about: str
    space: List[Param]
    grid: Dict[str, List[Any]]       # the grid arm's points: at most TRIALS of them
    load: Callable[[], Data]
    model: Callable[[Dict[str, Any]], Any]
    _data: Optional[Data] = None

    def data(self) -> Data:
        if self._data is None:
            self._data = self.load()
        return self._data

    def train_epoch(self, model: Any) -> float:
        """One pass over the training set, then the validation accuracy."""
        x_train, x_val, y_train, y_val = self.data()
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore", ConvergenceWarning)
            warnings.simplefilter("ignore", RuntimeWarning)
            model.partial_fit(x_train, y_train, classes=np.unique(y_train))
            return float(model.score(x_val, y_val))


def _digits() -> Data:
    # the same split as examples/hpo_digits.py
    digits = load_digits()
    return train_test_split(digits.data / 16.0, digits.target, test_size=0.2, random_state=0,
                            stratify=digits.target)


def _scaled(x: np.ndarray, y: np.ndarray, test_size: float) -> Data:
    x_train, x_val, y_train, y_val = train_test_split(x, y, test_size=test_size,
                                                      random_state=0, stratify=y)
    scaler = StandardScaler().fit(x_train)
    return scaler.transform(x_train), scaler.transform(x_val), y_train, y_val


def _hastie() -> Data:
    # ten Gaussian features, the class is whether their squared norm passes the median:
    # no linear model separates it; an MLP gets to ~0.95 with the right step size
    x, y = make_hastie_10_2(n_samples=3000, random_state=0)
    return _scaled(x, y, test_size=0.25)


def _linear() -> Data:
    x, y = make_classification(n_samples=4000, n_features=40, n_informative=8,
                               n_redundant=10, n_clusters_per_class=3, class_sep=0.9,
                               flip_y=0.03, random_state=0)
    return _scaled(x, y, test_size=0.3)


def _config_seed(config: Dict[str, Any]) -> int:
    # A model's seed is the configuration's, not the arm's or the sweep's: the same
    # configuration then has one learning curve everywhere, and the cache holds it once.
    # (hashlib, not hash(): str hashes differ from one process to the next)
    digest = hashlib.blake2b(json.dumps(config, sort_keys=True).encode(), digest_size=4)
    return int.from_bytes(digest.digest(), "big") % (2 ** 31)


def _mlp(config: Dict[str, Any]) -> MLPClassifier:
    return MLPClassifier(hidden_layer_sizes=(int(config["width"]),), solver="sgd",
                         momentum=float(config.get("momentum", 0.0)),
                         learning_rate_init=float(config["lr"]),
                         batch_size=int(config["batch_size"]), alpha=float(config["alpha"]),
                         random_state=_config_seed(config))


def _sgd(config: Dict[str, Any]) -> SGDClassifier:
    return SGDClassifier(loss=config["loss"], alpha=float(config["alpha"]),
                         eta0=float(config["eta0"]), learning_rate=config["schedule"],
                         random_state=_config_seed(config))


TASKS = {
    "digits-mlp": Task(
        "digits-mlp", "MLP (1 hidden layer, SGD) on scikit-learn's digits, 1,437 / 360",
        [log("lr", 1e-4, 1.0), cat("width", 16, 32, 64, 128),
         cat("batch_size", 32, 64, 128, 256), log("alpha", 1e-6, 1e-1)],
        dict(lr=[1e-4, 1e-3, 1e-2, 1e-1, 1.0], width=[32, 128], batch_size=[32, 128],
             alpha=[1e-5, 1e-2]),
        _digits, _mlp),
    "hastie-mlp": Task(
        "hastie-mlp", "MLP (SGD with momentum) on make_hastie_10_2, 2,250 / 750",
        [log("lr", 1e-4, 1.0), Param("momentum", "uniform", 0.0, 0.95),
         Param("width", "int", 8, 128), cat("batch_size", 32, 64, 128, 256),
         log("alpha", 1e-6, 1e-1)],
        dict(lr=[1e-3, 1e-2, 1e-1, 1.0], momentum=[0.0, 0.9], width=[16, 128],
             batch_size=[32, 128], alpha=[1e-4]),
        _hastie, _mlp),
    "linear-sgd": Task(
        "linear-sgd", "SGDClassifier on make_classification (40 features), 2,800 / 1,200",
        [cat("loss", "hinge", "log_loss", "modified_huber", "squared_hinge"),
         log("alpha", 1e-7, 1e-1), log("eta0", 1e-5, 1.0),
         cat("schedule", "constant", "invscaling")],
        dict(loss=["hinge", "log_loss", "modified_huber"], alpha=[1e-6, 1e-4, 1e-2],
             eta0=[1e-4, 1e-2], schedule=["constant", "invscaling"]),
        _linear, _sgd),
}


class Curves:
    """Learning curves by (task, configuration), trained as far as anyone asked.

    The model of a curve is kept only while a trial is on it; a later trial that wants more
    epochs than a curve has retrains from scratch to there (the model's seed makes that the
    same curve), which keeps memory flat over thousands of trials.
    """

    def __init__(self) -> None:
        self.curves: Dict[Tuple[str, str], List[float]] = {}
        self.models: Dict[Tuple[str, str], Tuple[Any, int]] = {}
        self.trained = 0             # epochs actually computed, cache misses
        self.seconds = 0.0

    def value(self, task: Task, config: Dict[str, Any], epoch: int) -> float:
        key = (task.name, json.dumps(config, sort_keys=True))
        curve = self.curves.setdefault(key, [])
        if epoch < len(curve):
            return curve[epoch]
        t0 = time.perf_counter()
        model, done = self.models.get(key, (None, 0))
        if model is None:
            model, done = task.model(config), 0
        while done <= epoch:
            accuracy = task.train_epoch(model)
            if done >= len(curve):
                curve.append(accuracy)
            done += 1
            self.trained += 1
        self.models[key] = (model, done)
        self.seconds += time.perf_counter() - t0
        return curve[epoch]

    def release(self, task: Task, config: Dict[str, Any]) -> None:
        self.models.pop((task.name, json.dumps(config, sort_keys=True)), None)


# ------------------------------------------------------------------ the arms

class Driver:
    """An arm's search as the simulated workers see it."""

    def ask(self, worker: int) -> Optional[Dict[str, Any]]:
        """The worker's next configuration, or None when the arm hands out no more."""
        raise NotImplementedError

    def report(self, worker: int, epoch: int, value: float) -> bool:
        """Record the value; True when the trial is pruned (and so ended) now."""
        raise NotImplementedError

    def finish(self, worker: int, value: float) -> None:
        raise NotImplementedError

    def close(self) -> Dict[str, Any]:
        """Stop, and say what the arm itself recorded (for a cross-check)."""
        return {}


class PodsweepDriver(Driver):
    """Two hpo.Session objects, one per worker, on one journal."""

    def __init__(self, task: Task, root: Path, experiment: str, strategy: str, seed: int,
                 pruner: Optional[str]) -> None:
        self.sessions = [hpo.Session(root, experiment) for _ in range(WORKERS)]
        self.path = root / experiment / "hpo.jsonl"
        self.pruner = pruner
        if strategy == "GridSearch":
            self.grid: Dict[str, Any] = dict(task.grid)
        else:
            self.grid = {p.name: p.podsweep() for p in task.space}
        self.kwargs: Dict[str, Any] = dict(strategy=getattr(hpo.Strategy, strategy), seed=seed)
        if HAS_TPE:
            # "asha-3": ASHA with the reduction factor of 3 it had before 4 became its default
            chosen: Any = hpo.ASHA(reduction_factor=3) if pruner == "asha-3" else pruner
            self.kwargs.update(metric="accuracy", mode="max", pruner=chosen)
            if strategy != "GridSearch":
                self.kwargs.update(trials=TRIALS)

    def ask(self, worker: int) -> Optional[Dict[str, Any]]:
        try:
            return self.sessions[worker].pick(self.grid, **self.kwargs)
        except hpo.NoTrialsLeft:
            return None

    def report(self, worker: int, epoch: int, value: float) -> bool:
        session = self.sessions[worker]
        session.report(epoch, {"accuracy": value})
        return self.pruner is not None and bool(session.should_prune())  # type: ignore[attr-defined]

    def finish(self, worker: int, value: float) -> None:
        self.sessions[worker].end("finished")

    def close(self) -> Dict[str, Any]:
        for session in self.sessions:
            session.on_exit()        # stops the heartbeat thread; no trial is held by now
        res = hpo.results(self.path)
        statuses: Dict[str, int] = {}
        for trial in res:
            statuses[trial.status] = statuses.get(trial.status, 0) + 1
        out: Dict[str, Any] = {"statuses": statuses}
        if hasattr(res, "epochs_used"):
            out["epochs_used"] = res.epochs_used
        return out


class OptunaDriver(Driver):
    def __init__(self, task: Task, seed: int, pruner: Optional[str]) -> None:
        import optuna

        self.optuna = optuna
        self.space = task.space
        pruners = {None: optuna.pruners.NopPruner, "sha": optuna.pruners.SuccessiveHalvingPruner,
                   "hyperband": optuna.pruners.HyperbandPruner}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            sampler = optuna.samplers.TPESampler(seed=seed, constant_liar=True)
        self.study = optuna.create_study(direction="maximize", sampler=sampler,
                                         pruner=pruners[pruner]())
        self.trials: Dict[int, Any] = {}
        self.asked = 0

    def ask(self, worker: int) -> Optional[Dict[str, Any]]:
        if self.asked >= TRIALS:
            return None
        self.asked += 1
        trial = self.trials[worker] = self.study.ask()
        return {p.name: p.optuna(trial) for p in self.space}

    def report(self, worker: int, epoch: int, value: float) -> bool:
        trial = self.trials[worker]
        trial.report(value, epoch)
        if trial.should_prune():
            self.study.tell(trial, state=self.optuna.trial.TrialState.PRUNED)
            return True
        return False

    def finish(self, worker: int, value: float) -> None:
        self.study.tell(self.trials[worker], value)

    def close(self) -> Dict[str, Any]:
        statuses: Dict[str, int] = {}
        for trial in self.study.trials:
            name = trial.state.name.lower()
            statuses[name] = statuses.get(name, 0) + 1
        return {"statuses": statuses}


@dataclass(frozen=True)
class Arm:
    name: str
    system: str                      # "podsweep" | "optuna"
    strategy: str = "TPE"            # podsweep's Strategy member
    pruner: Optional[str] = None

    def needs_tpe(self) -> bool:
        return self.system == "podsweep" and self.strategy == "TPE"


ARMS = [
    Arm("grid", "podsweep", "GridSearch"),
    Arm("random", "podsweep", "RandomSearch"),
    Arm("podsweep TPE", "podsweep"),
    Arm("podsweep TPE+ASHA", "podsweep", pruner="asha"),
    Arm("podsweep TPE+ASHA η=3", "podsweep", pruner="asha-3"),
    Arm("podsweep TPE+median", "podsweep", pruner="median"),
    Arm("Optuna TPE", "optuna"),
    Arm("Optuna TPE+SHA", "optuna", pruner="sha"),
    Arm("Optuna TPE+Hyperband", "optuna", pruner="hyperband"),
]
RANDOM, OPTUNA_SHA, ASHA = "random", "Optuna TPE+SHA", "podsweep TPE+ASHA"


# ------------------------------------------------------------------ two workers, simulated

@dataclass
class TrialRun:
    config: Dict[str, Any]
    values: List[float] = field(default_factory=list)
    status: str = "running"


@dataclass
class Run:
    task: str
    arm: str
    seed: int
    best: float
    epochs: int
    to_within: int
    trials: int
    pruned: int
    overhead_s: float
    """Seconds spent in the arm's own calls (pick/ask, report, should_prune, end/tell)."""
    recorded: Dict[str, Any]
    trial_runs: List[Dict[str, Any]]


def simulate(task: Task, driver: Driver, curves: Curves) -> Tuple[List[TrialRun], List[int],
                                                                  float]:
    """Run the arm to its end; return its trials, the trial of each epoch in the order the
    epochs ended, and the seconds spent in the driver."""
    trials: List[TrialRun] = []
    timeline: List[int] = []
    current: Dict[int, int] = {}
    events: List[Tuple[int, int]] = []       # (time the worker's epoch ends, worker)
    overhead = 0.0

    def call(fn: Callable[..., Any], *args: Any) -> Any:
        nonlocal overhead
        t0 = time.perf_counter()
        try:
            return fn(*args)
        finally:
            overhead += time.perf_counter() - t0

    def start(worker: int, now: int) -> None:
        if len(trials) >= TRIALS:
            return
        config = call(driver.ask, worker)
        if config is None:
            return
        current[worker] = len(trials)
        trials.append(TrialRun(config))
        heapq.heappush(events, (now + 1, worker))

    for worker in range(WORKERS):
        start(worker, 0)
    while events:
        now, worker = heapq.heappop(events)
        index = current[worker]
        trial = trials[index]
        epoch = len(trial.values)
        value = curves.value(task, trial.config, epoch)
        trial.values.append(value)
        timeline.append(index)
        if call(driver.report, worker, epoch, value):
            trial.status = "pruned"
        elif epoch + 1 == EPOCHS:
            call(driver.finish, worker, value)
            trial.status = "finished"
        else:
            heapq.heappush(events, (now + 1, worker))
            continue
        curves.release(task, trial.config)
        del current[worker]
        start(worker, now)
    return trials, timeline, overhead


def epochs_to_within(trials: List[TrialRun], timeline: List[int], best: float) -> int:
    """Epochs used until the best so far came within WITHIN of ``best`` for good.

    The best so far after an epoch is the largest latest value of any trial begun (a
    checkpoint one could keep); it may fall back while a trial's accuracy drops, hence "for
    good": the count ends where it last came within reach.
    """
    done = [0] * len(trials)
    latest: Dict[int, float] = {}
    so_far: List[float] = []
    for index in timeline:
        latest[index] = trials[index].values[done[index]]
        done[index] += 1
        so_far.append(max(latest.values()))
    count = len(timeline)
    while count > 1 and so_far[count - 2] >= best - WITHIN - 1e-12:
        count -= 1
    return count


def measure(task: Task, arm: Arm, seed: int, curves: Curves, root: Path) -> Run:
    driver: Driver
    if arm.system == "podsweep":
        experiment = f"{task.name}-{arm.name.replace(' ', '-').replace('+', '-')}-{seed}"
        driver = PodsweepDriver(task, root, experiment, arm.strategy, seed, arm.pruner)
    else:
        driver = OptunaDriver(task, seed, arm.pruner)
    trials, timeline, overhead = simulate(task, driver, curves)
    recorded = driver.close()

    best = max(t.values[-1] for t in trials)
    return Run(task.name, arm.name, seed, best, len(timeline),
               epochs_to_within(trials, timeline, best), len(trials),
               sum(t.status == "pruned" for t in trials), overhead, recorded,
               [asdict(t) for t in trials])


# ------------------------------------------------------------------ the report

def _median(values: Sequence[float]) -> float:
    return float(statistics.median(values))


def summarise(runs: List[Run]) -> Dict[str, Dict[str, Dict[str, float]]]:
    """task -> arm -> medians over seeds."""
    out: Dict[str, Dict[str, Dict[str, float]]] = {}
    for run in runs:
        out.setdefault(run.task, {}).setdefault(run.arm, {})
    for task, arms in out.items():
        for arm in arms:
            mine = [r for r in runs if r.task == task and r.arm == arm]
            arms[arm] = {
                "seeds": len(mine),
                "best": _median([r.best for r in mine]),
                "epochs": _median([r.epochs for r in mine]),
                "to_within": _median([r.to_within for r in mine]),
                "pruned": _median([r.pruned for r in mine]),
                "overhead_ms_per_trial": _median([1000 * r.overhead_s / r.trials
                                                  for r in mine]),
            }
    return out


def _ratio(value: float, base: Optional[float]) -> str:
    return f"{value / base:.2f}x" if base else ""


def table(task: str, arms: Dict[str, Dict[str, float]]) -> List[str]:
    random = arms.get(RANDOM)
    sha = arms.get(OPTUNA_SHA)
    lines = ["| arm | best accuracy | vs random | epochs | vs random | vs Optuna TPE+SHA "
             "| epochs to within 0.5 pt | vs random | vs Optuna TPE+SHA | pruned "
             "| arm's calls, ms/trial |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for arm in (a.name for a in ARMS):
        m = arms.get(arm)
        if m is None:
            continue
        diff = (f"{100 * (m['best'] - random['best']):+.1f} pt" if random else "")
        lines.append(
            f"| {arm} | {m['best']:.4f} | {diff} | {m['epochs']:.0f} "
            f"| {_ratio(m['epochs'], random and random['epochs'])} "
            f"| {_ratio(m['epochs'], sha and sha['epochs'])} | {m['to_within']:.0f} "
            f"| {_ratio(m['to_within'], random and random['to_within'])} "
            f"| {_ratio(m['to_within'], sha and sha['to_within'])} | {m['pruned']:.0f} "
            f"| {m['overhead_ms_per_trial']:.1f} |")
    return lines


def acceptance(task: str, arms: Dict[str, Dict[str, float]]) -> str:
    """The issue's bar: TPE+ASHA within half random's epochs and a point of its accuracy."""
    asha, random = arms.get(ASHA), arms.get(RANDOM)
    if asha is None or random is None:
        return f"{task}: acceptance not measured (no {ASHA if asha is None else RANDOM} arm)"
    epochs_ok = asha["epochs"] <= 0.5 * random["epochs"]
    best_ok = asha["best"] >= random["best"] - 0.01
    verdict = "PASS" if epochs_ok and best_ok else "FAIL"
    return (f"{task}: {verdict}: TPE+ASHA used {asha['epochs']:.0f} epochs = "
            f"{asha['epochs'] / random['epochs']:.2f}x random's {random['epochs']:.0f} "
            f"(bar 0.50x: {'met' if epochs_ok else 'missed'}); best {asha['best']:.4f} vs "
            f"random's {random['best']:.4f}, {100 * (asha['best'] - random['best']):+.1f} "
            f"points (bar -1.0: {'met' if best_ok else 'missed'})")


def cross_check(runs: List[Run]) -> List[str]:
    """podsweep's journal must say what the simulation did: epochs and pruned trials."""
    problems = []
    for r in runs:
        rec = r.recorded
        if "epochs_used" in rec and rec["epochs_used"] != r.epochs:
            problems.append(f"{r.task} {r.arm} seed {r.seed}: journal says "
                            f"{rec['epochs_used']} epochs used, the workers trained {r.epochs}")
        pruned = rec.get("statuses", {}).get("pruned", 0)
        if pruned != r.pruned:
            problems.append(f"{r.task} {r.arm} seed {r.seed}: {pruned} trials recorded "
                            f"pruned, {r.pruned} stopped by the pruner")
    return problems


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="a smoke run: 2 tasks, 2 seeds")
    parser.add_argument("--seeds", type=int, default=None, help="seeds per arm (default 5)")
    parser.add_argument("--tasks", nargs="+", choices=sorted(TASKS), default=None)
    parser.add_argument("--arms", nargs="+", choices=[a.name for a in ARMS], default=None,
                        metavar="ARM", help="arms by name (default: all)")
    parser.add_argument("--out", type=Path, default=None,
                        help="raw results (default benchmarks/results/hpo_efficiency-TIME.json)")
    args = parser.parse_args()
    seeds = args.seeds or (2 if args.quick else 5)
    tasks = args.tasks or (["digits-mlp", "linear-sgd"] if args.quick else list(TASKS))
    arms = [a for a in ARMS if args.arms is None or a.name in args.arms]
    if not HAS_TPE:
        skipped = [a.name for a in arms if a.needs_tpe()]
        arms = [a for a in arms if not a.needs_tpe()]
        print(f"skipped (this podsweep.hpo has no Strategy.TPE): {', '.join(skipped)}",
              file=sys.stderr)

    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    logging.getLogger("podsweep.hpo").disabled = True
    load_before = os.getloadavg()
    started = time.perf_counter()
    curves = Curves()
    runs: List[Run] = []
    root = Path(tempfile.mkdtemp(prefix="hpo-efficiency-"))
    try:
        for task_name in tasks:
            task = TASKS[task_name]
            t0 = time.perf_counter()
            for seed in range(seeds):
                for arm in arms:
                    runs.append(measure(task, arm, seed, curves, root))
            print(f"{task_name}: {len(arms)} arms x {seeds} seeds in "
                  f"{time.perf_counter() - t0:.0f} s", file=sys.stderr)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    wall = time.perf_counter() - started
    load_after = os.getloadavg()

    summary = summarise(runs)
    print(f"\n{TRIALS} trials of up to {EPOCHS} epochs, {WORKERS} workers, medians over "
          f"{seeds} seeds; best = largest last value of a trial; epochs to within 0.5 pt: "
          f"until the best so far stayed within 0.5 points of the run's final best.")
    for task_name in tasks:
        print(f"\n### {task_name}: {TASKS[task_name].about}\n")
        print("\n".join(table(task_name, summary[task_name])))
    print()
    for task_name in tasks:
        print(acceptance(task_name, summary[task_name]))
    problems = cross_check(runs)
    for line in problems:
        print(f"MISMATCH {line}")
    simulated = sum(r.epochs for r in runs)
    sys.stdout.flush()
    print(f"\n{wall:.0f} s in all, {curves.seconds:.0f} s of it training {curves.trained} "
          f"epochs (of {simulated} the arms used; the rest came from the curve cache); "
          f"load average {load_before[0]:.1f} before, {load_after[0]:.1f} after",
          file=sys.stderr)

    out = args.out or RESULTS / f"hpo_efficiency-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    meta = {"date": time.strftime("%Y-%m-%d %H:%M:%S"), "cpus": os.cpu_count(),
            "python": platform.python_version(), "optuna": optuna.__version__,
            "podsweep_tpe": HAS_TPE, "seeds": seeds, "tasks": tasks,
            "arms": [a.name for a in arms], "trials": TRIALS, "epochs": EPOCHS,
            "workers": WORKERS, "wall_s": round(wall, 1), "epochs_trained": curves.trained,
            "epochs_simulated": simulated,
            "load_before": load_before, "load_after": load_after, "mismatches": problems}
    out.write_text(json.dumps({"meta": meta, "summary": summary,
                               "runs": [asdict(r) for r in runs]}))
    print(f"raw results: {out}", file=sys.stderr)
    if problems:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
