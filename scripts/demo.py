"""make demo: the walk-through on this machine, narrated, with the real training script.

It starts a local control plane with 4 virtual GPUs in .demo/home. It creates team-a and
team-b with 2 GPUs each, then submits hpo1: 12 pods of examples/hpo_digits.py, 3 at a time,
one GPU each, with the shared directory at /nfs/hpo. Then team-b claims its 2 GPUs, and one
hpo1 pod is preempted. The demo follows the job with list/get/logs until the 12
configurations are done, shows the results with the best marked, deletes the job and stops
the control plane.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / ".demo"
HOME = DEMO / "home"
NFS = DEMO / "nfs"
PODSWEEP = str(Path(sys.executable).with_name("podsweep"))
ENV = {**os.environ, "PODSWEEP_HOME": str(HOME)}
for key in ("PODSWEEP_PROJECT", "PODSWEEP_TOKEN", "PODSWEEP_URL"):
    ENV.pop(key, None)


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


def job(name: str, project: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(podsweep("get", name, "-p", project, "-o", "json",
                                               show=False))
    return data


def wait(what: str, test: Any, timeout: float = 300) -> None:
    """Wait for a condition, printing the job's progress on one line as it changes."""
    deadline = time.monotonic() + timeout
    last = ""
    while not test():
        if time.monotonic() > deadline:
            raise SystemExit(f"demo: timed out waiting for {what}")
        j = job("hpo1", "team-a")["job"]
        line = (f"  ... {what}: hpo1 {j['status']}, {j['running']} running, "
                f"{j['succeeded']}/{j['completions']} done")
        if line != last:
            say(line)
            last = line
        time.sleep(0.3)
    say()


def main() -> int:
    subprocess.run([PODSWEEP, "down"], env=ENV, capture_output=True)
    shutil.rmtree(DEMO, ignore_errors=True)
    NFS.mkdir(parents=True)
    say("The podsweep walk-through, on this machine, with 4 virtual GPUs.\n")
    podsweep("up", "--gpus", "4")
    try:
        say("An admin creates two projects and gives each 2 GPUs:")
        podsweep("project", "create", "team-a", "--gpus", "2")
        podsweep("project", "create", "team-b", "--gpus", "2")
        say("A researcher of team-a submits the sweep: 12 pods, at most 3 at a time, one GPU"
            " each,\nwith the shared directory .demo/nfs mounted at /nfs/hpo in every pod:")
        podsweep("project", "set", "team-a")
        podsweep("submit", "hpo1", "-g", "1", "--parallelism", "3", "--completions", "12",
                 "-v", f"{NFS}:/nfs/hpo", "--", sys.executable, "examples/hpo_digits.py",
                 "--epochs", "10", "--epoch-seconds", "0.3")
        wait("3 pods running", lambda: job("hpo1", "team-a")["job"]["running"] == 3)
        wait("a few epochs", lambda: "epoch 2:" in podsweep(
            "logs", "hpo1", "--pod", "hpo1-2-0", show=False))
        say("team-a deserves 2 GPUs but uses 3: the third was idle, so it may borrow it.")
        podsweep("list")
        podsweep("project", "list")
        say("team-b now needs its 2 GPUs. One GPU is free, so the newest hpo1 pod is")
        say("preempted (SIGTERM); the HPO library marks its trial preempted:")
        podsweep("submit", "train", "-p", "team-b", "-g", "2", "--", "sleep", "6")
        wait("the preemption", lambda: any(e["kind"] == "Preempted"
                                           for e in job("hpo1", "team-a")["events"]))
        podsweep("get", "hpo1")
        wait("all 12 pods", lambda: job("hpo1", "team-a")["job"]["status"] in
             ("Succeeded", "Failed"), timeout=600)
        detail = job("hpo1", "team-a")
        podsweep("list", "-A")
        for pod in detail["pods"]:
            text = podsweep("logs", "hpo1", "--pod", pod["name"], show=False)
            if "Picked preempted" in text:
                say(f"The preempted trial was handed to the next pod that asked, "
                    f"{pod['name']}, which resumed it from its checkpoint:")
                podsweep("logs", "hpo1", "--pod", pod["name"], "--tail", "10")
                break
        experiment = NFS / f"hpo1-{detail['job']['uid']}"
        say("Every variation and result is in one file, "
            f"{(experiment / 'hpo.jsonl').relative_to(ROOT)}:")
        podsweep("hpo", "show", str(experiment.relative_to(ROOT)))
        podsweep("delete", "hpo1")
    finally:
        podsweep("down")
    return 0


if __name__ == "__main__":
    sys.exit(main())
