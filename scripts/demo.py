"""make demo: the walk-through on this machine, narrated, with the real training script.

It starts a local control plane with 4 virtual GPUs in .demo/home. It creates team-a and
team-b with 2 GPUs each, then submits hpo1: 12 pods of examples/hpo_digits.py, 3 at a time,
one GPU each, with the shared directory at /nfs/hpo. Once every running hpo1 pod is training
(each has reported an epoch to the journal), team-b claims its 2 GPUs and one hpo1 pod is
preempted mid-training. Another pod picks its trial up again and resumes it from its
checkpoint; the demo finds that pod (the journal says which trial, the pods' logs which
pod) and shows its log. It follows the job until the 12 configurations are done, shows the
results with the best marked, deletes the job and stops the control plane.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import podsweep.hpo as hpo

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / ".demo"
HOME = DEMO / "home"
NFS = DEMO / "nfs"
MOUNT = "/nfs/hpo"           # where the pods see NFS
PODSWEEP = str(Path(sys.executable).with_name("podsweep"))
ENV = {**os.environ, "PODSWEEP_HOME": str(HOME)}
for key in ("PODSWEEP_PROJECT", "PODSWEEP_TOKEN", "PODSWEEP_URL"):
    ENV.pop(key, None)
# long enough epochs that the preemption lands while the trial trains, short enough that
# the 12 trials take about a minute on two cores
TRAIN = [sys.executable, "examples/hpo_digits.py", "--epochs", "8", "--epoch-seconds", "0.6"]


def say(text: str = "") -> None:
    print(text, flush=True)


def podsweep(*args: str, show: bool = True) -> str:
    if show:
        say(f"$ podsweep {' '.join(args)}")
    proc = subprocess.run([PODSWEEP, *args], capture_output=True, text=True, env=ENV, cwd=ROOT)
    if proc.returncode != 0:
        say(proc.stdout + proc.stderr)
        raise SystemExit(f"demo: podsweep {' '.join(args)} failed")
    if show:
        say(proc.stdout.rstrip() + "\n")
    return proc.stdout


def job(name: str = "hpo1", project: str = "team-a") -> dict[str, Any]:
    data: dict[str, Any] = json.loads(podsweep("get", name, "-p", project, "-o", "json",
                                               show=False))
    return data


def wait(what: str, test: Callable[[], Any], timeout: float = 300) -> Any:
    """Wait for ``test()`` to hold, printing hpo1's progress on one line as it changes."""
    deadline = time.monotonic() + timeout
    last = ""
    while not (result := test()):
        if time.monotonic() > deadline:
            raise SystemExit(f"demo: timed out waiting for {what}")
        j = job()["job"]
        line = (f"  ... {what}: hpo1 {j['status']}, {j['running']} running, "
                f"{j['succeeded']}/{j['completions']} done")
        if line != last:
            say(line)
            last = line
        time.sleep(0.3)
    if last:
        say()
    return result


def trials(experiment: Path) -> list[hpo.Trial]:
    """The trials in the experiment's journal so far (none before the first pick)."""
    if not (experiment / "hpo.jsonl").exists():
        return []
    return list(hpo.results(experiment))


def all_training(experiment: Path) -> bool:
    """Every running pod of hpo1 holds a trial that has reported at least one epoch."""
    running = [t for t in trials(experiment) if t.status == "running"]
    return job()["job"]["running"] == 3 and len(running) == 3 and \
        all(t.epoch is not None for t in running)


def main() -> int:
    subprocess.run([PODSWEEP, "down"], env=ENV, capture_output=True)
    shutil.rmtree(DEMO, ignore_errors=True)
    NFS.mkdir(parents=True)
    say("The podsweep walk-through, on this machine, with 4 virtual GPUs.\n")
    podsweep("up", "--gpus", "4", "--cpus", "16")   # pods hold CPUs too: not the limit here
    try:
        say("An admin creates two projects and gives each 2 GPUs:")
        podsweep("project", "create", "team-a", "--gpus", "2")
        podsweep("project", "create", "team-b", "--gpus", "2")
        say("A researcher of team-a submits the sweep: 12 pods, at most 3 at a time, one GPU"
            f" each,\nwith the shared directory .demo/nfs mounted at {MOUNT} in every pod:")
        podsweep("project", "set", "team-a")
        podsweep("submit", "hpo1", "-g", "1", "--parallelism", "3", "--completions", "12",
                 "-v", f"{NFS}:{MOUNT}", "--", *TRAIN)
        experiment = NFS / f"hpo1-{job()['job']['uid']}"
        wait("3 pods running", lambda: job()["job"]["running"] == 3)
        say("team-a deserves 2 GPUs but uses 3: the third was idle, so it may borrow it.")
        podsweep("list")
        podsweep("project", "list")
        # team-b comes once every running pod is mid-training, so the one preempted (the
        # scheduler's choice) has a checkpoint to resume from
        wait("3 pods training", lambda: all_training(experiment))

        say("team-b now needs its 2 GPUs. One GPU is free, so the newest hpo1 pod is")
        say("preempted (SIGTERM) in the middle of its training; the HPO library marks its")
        say("trial preempted, with the epoch it reached (its checkpoint is in the trial's "
            "directory):")
        podsweep("submit", "train", "-p", "team-b", "-g", "2", "--", "sleep", "8")
        preempted = wait("the preemption", lambda: next(
            (t for t in trials(experiment) if t.status == "preempted"), None))
        podsweep("get", "hpo1")
        say(f"Trial #{preempted.id} {preempted.config} was preempted after epoch "
            f"{preempted.epoch}.\n")

        resumed = wait(f"a pod to pick trial #{preempted.id} again", lambda: next(
            (t for t in trials(experiment) if t.id == preempted.id and t.attempts > 1), None))
        done = wait("all 12 pods", lambda: (lambda j: j if j["job"]["status"] in (
            "Succeeded", "Failed") else None)(job()), timeout=600)
        podsweep("list", "-A")
        # The journal said which trial was resumed; the pods' logs say which pod took it.
        picked = f"Picked preempted HPO experiment #{resumed.id} "
        pod = next((p["name"] for p in done["pods"] if picked in podsweep(
            "logs", "hpo1", "--pod", p["name"], show=False)), None)
        if pod is None:
            raise SystemExit(f"demo: no pod's log says {picked.strip()!r}")
        say(f"The preempted trial was handed to the next pod that asked, {pod}, which")
        say("resumed it from its checkpoint:")
        podsweep("logs", "hpo1", "--pod", pod)

        say("Every variation and result is in one file, "
            f"{(experiment / 'hpo.jsonl').relative_to(ROOT)}; trial #{resumed.id} took "
            "2 attempts:")
        podsweep("hpo", "show", str(experiment.relative_to(ROOT)))
        podsweep("delete", "hpo1")
    finally:
        podsweep("down")
    return 0


if __name__ == "__main__":
    sys.exit(main())
