"""Capture the Slurm output that tests/cluster/test_slurm_parse.py reads, from a real Slurm.

Run as root (it makes and removes its own accounts and QOS) on the Slurm that
scripts/slurm-up.sh starts, under the lock the Slurm tests share:

    flock /tmp/slurm.lock python tests/golden/slurm/capture.py

It runs one array as podsweep would (a project QOS with a GPU quota of 1, the borrow QOS
that the project's QOS preempts) and brings its tasks into every state the parsers meet:
index 0 completed, 1 failed (exit 3), 2 running in the quota, 3 lent then preempted by a
second project and requeued, 4 lent then cancelled, 5 lent and running, 6-7 the array's
pending rest waiting on the quota. Then it writes, in the exact formats the engine asks
for: ``squeue --json`` (the two arrays' records only), ``sacct`` of the array (the engine's
fallback) and its look-up by name, and ``scontrol -o show node``.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
PREFIX = "golden-"
TEAM, OTHER = f"{PREFIX}team", f"{PREFIX}other"
BORROW = f"ps_{PREFIX}borrow"
SACCT_FORMAT = "--format=JobIDRaw,JobID,State,ExitCode,Start,End,QOS,Partition"


def run(*argv: str, check: bool = True) -> str:
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    if check and proc.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} -> {proc.returncode}: {proc.stderr}")
    return proc.stdout


def sacctmgr(*args: str) -> None:
    run("sacctmgr", "-i", *args, check=False)


def until(what: str, probe: Callable[[], Any], timeout: float = 90) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = probe()
        if found:
            return found
        time.sleep(0.5)
    raise SystemExit(f"timed out waiting for {what}")


def records(*arrays: str) -> list[dict[str, Any]]:
    data = json.loads(run("squeue", "--json"))
    return [j for j in data["jobs"] if str(j["array_job_id"] or j["job_id"]) in arrays]


def task(array: str, index: int) -> dict[str, Any] | None:
    return next((j for j in records(array) if j.get("array_task_id") == index), None)


def state(array: str, index: int) -> str:
    found = task(array, index)
    return str(found["job_state"]) if found else ""


def set_up() -> None:
    user = run("id", "-un").strip()
    sacctmgr("add", "qos", BORROW)
    sacctmgr("modify", "qos", "where", f"name={BORROW}", "set", "Priority=0",
             "PreemptMode=requeue")
    for account, gpus in ((TEAM, 1), (OTHER, 2)):
        qos = f"ps-{account}"
        sacctmgr("add", "qos", qos)
        sacctmgr("modify", "qos", "where", f"name={qos}", "set",
                 f"GrpTRES=gres/gpu={gpus},cpu=-1", "Priority=10", f"Preempt={BORROW}")
        sacctmgr("add", "account", account, f"Description=podsweep project {account}",
                 "Organization=podsweep")
        sacctmgr("add", "user", user, f"Account={account}", f"QOS={qos},{BORROW}",
                 f"DefaultQOS={qos}")
    until("the associations", lambda: all(
        f"Account={a} " in run("scontrol", "show", "assoc_mgr", f"users={user}",
                               f"accounts={a}", "flags=assoc") for a in (TEAM, OTHER)))


def clean_up() -> None:
    jobs = run("squeue", "-h", "-A", f"{TEAM},{OTHER}", "-o", "%A", check=False).split()
    if jobs:
        run("scancel", *sorted(set(jobs)), check=False)
    sacctmgr("delete", "user", "where", f"account={TEAM},{OTHER}")
    sacctmgr("delete", "account", f"{TEAM},{OTHER}")
    sacctmgr("delete", "qos", f"ps-{TEAM},ps-{OTHER},{BORROW}")


def lend(array: str, index: int) -> None:
    """What the engine's _move does."""
    run("scontrol", "update", f"JobId={array}_{index}", f"QOS={BORROW}", "Partition=borrow")


def capture(out: Path) -> None:
    script = ('case "$SLURM_ARRAY_TASK_ID" in 0) exit 0;; 1) exit 3;; esac; '
              'exec sleep 600')
    array = run("sbatch", "--parsable", "--export=NIL", "--array=0-7%6", f"--account={TEAM}",
                f"--qos=ps-{TEAM}", "--partition=gpu", f"--job-name=sweep.{PREFIX}uid",
                "--cpus-per-task=2", f"--output={out}/%A_%a.out", "--requeue",
                "--gres=gpu:1", "--wrap", script).strip().split(";")[0]
    until("0 completed, 1 failed, 2 running",
          lambda: (state(array, 0), state(array, 1), state(array, 2)) ==
          ("COMPLETED", "FAILED", "RUNNING"))
    for index in (3, 4, 5):
        lend(array, index)
        until(f"{index} running", lambda i=index: state(array, i) == "RUNNING")
    run("scancel", f"{array}_4")
    until("4 cancelled", lambda: state(array, 4) == "CANCELLED")
    # the other project within its quota takes 2 GPUs: 3 are held, so a lent task goes
    other = run("sbatch", "--parsable", "--export=NIL", f"--account={OTHER}",
                f"--qos=ps-{OTHER}", "--partition=gpu", "--job-name=claim", "--gres=gpu:2",
                f"--output={out}/%j.out", "--wrap", "exec sleep 600").strip()
    until("a lent task requeued", lambda: any(
        (task(array, i) or {}).get("restart_cnt") for i in (3, 5)))
    until("the claim running", lambda: any(
        j["job_state"] == "RUNNING" for j in records(other)))
    data = json.loads(run("squeue", "--json"))
    data["jobs"] = records(array, other)
    (HERE / "squeue.json").write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
    (HERE / "scontrol-show-node.txt").write_text(run("scontrol", "-o", "show", "node"))
    until("the preemption in accounting", lambda: "PREEMPTED" in run(
        "sacct", "-D", "-X", "-P", "-n", "-j", array, SACCT_FORMAT))
    (HERE / "sacct.txt").write_text(run("sacct", "-D", "-X", "-P", "-n", "-j", array,
                                        SACCT_FORMAT))
    since = time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(time.time() - 3600))
    (HERE / "sacct-by-name.txt").write_text(run(
        "sacct", "-X", "-n", "-P", f"--name=sweep.{PREFIX}uid", "-S", since,
        f"--account={TEAM}", "--format=JobID,JobName"))
    (HERE / "arrays.json").write_text(json.dumps({"array": int(array), "claim": int(other)})
                                      + "\n")


def main() -> None:
    if run("id", "-u").strip() != "0":
        sys.exit("run as root: it adds and removes Slurm accounts and QOS")
    clean_up()
    set_up()
    try:
        with tempfile.TemporaryDirectory() as out:
            capture(Path(out))
    finally:
        clean_up()


if __name__ == "__main__":
    main()
