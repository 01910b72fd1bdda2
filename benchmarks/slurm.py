"""podsweep on Slurm, beside podsweep on the local cluster and raw ``sbatch --array``.

The same 100 tasks of ``true``, at most 16 at a time, one run each, on this machine's
Slurm (scripts/slurm-up.sh: one node, 16 CPU slots, 4 fake GPUs):

1. raw Slurm: ``sbatch --array=0-99%16`` in the same account and QOS, each task's output to
   a file, waited for with ``squeue`` every 50 ms: the floor for anything on Slurm;
2. podsweep on Slurm: ``podsweep submit`` to Succeeded, seen by the client;
3. podsweep on the local cluster: the same job, pods as local processes.

Then where podsweep-on-Slurm's time goes: the submit (CLI, HTTP, the batch script; the
control plane runs sbatch right after it answers), Slurm running the array (first task
start to last task end, from Slurm's own records, whole seconds), the lag between Slurm's
end and podsweep seeing it (its poller looks at ``squeue --json`` every second), and the
rest (sbatch, Slurm starting the first task).

    python benchmarks/slurm.py [--tasks 100] [--parallelism 16]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from plane import Plane


def sh(*argv: str, check: bool = True) -> str:
    return subprocess.run(argv, check=check, capture_output=True, text=True).stdout


class BenchPlane(Plane):
    def run_job(self, name: str, tasks: int, parallelism: int) -> tuple[float, float, float]:
        """(seconds to submit, seconds from submit to Succeeded seen, wall time seen)."""
        t0 = time.perf_counter()
        self.cli("submit", name, "-p", "bench", "--parallelism", str(parallelism),
                 "--completions", str(tasks), "--", "true")
        submitted = time.perf_counter()
        job = self.wait("bench", name)
        done = time.perf_counter()
        assert job["status"] == "Succeeded" and job["succeeded"] == tasks, job
        return submitted - t0, done - t0, time.time()


def clean_slurm(prefix: str) -> None:
    accounts = [a for a in sh("sacctmgr", "-n", "-P", "show", "account",
                              "format=account").split() if a.startswith(prefix)]
    if accounts:
        sh("sacctmgr", "-i", "delete", "user", "where", f"account={','.join(accounts)}",
           check=False)
        sh("sacctmgr", "-i", "delete", "account", ",".join(accounts), check=False)
    qos = [q for q in sh("sacctmgr", "-n", "-P", "show", "qos", "format=name").split()
           if q.startswith((f"ps-{prefix}", f"ps_{prefix}"))]
    if qos:
        sh("sacctmgr", "-i", "delete", "qos", ",".join(qos), check=False)


def slurm_span(array: str) -> tuple[float, float]:
    """First start and last end of an array's tasks, from Slurm's records (whole seconds)."""
    data = json.loads(sh("squeue", "--json"))
    tasks = [j for j in data["jobs"] if str(j["array_job_id"]) == array
             and j["array_task_id"] is not None]
    return (min(float(j["start_time"]) for j in tasks),
            max(float(j["end_time"]) for j in tasks))


def raw_sbatch(account: str, qos: str, out: Path, tasks: int,
               parallelism: int) -> tuple[float, float, float, str]:
    t0 = time.perf_counter()
    array = sh("sbatch", "--parsable", f"--array=0-{tasks - 1}%{parallelism}",
               f"--account={account}", f"--qos={qos}", f"--output={out}/%A_%a.out",
               "--open-mode=append", "--wrap", "true").strip().split(";")[0]
    submitted = time.perf_counter()
    while sh("squeue", "-h", "-r", "-j", array, "-t", "PD,R,CG,CF", "-o", "%i").strip():
        time.sleep(0.05)
    return submitted - t0, time.perf_counter() - t0, time.time(), array


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=100)
    parser.add_argument("--parallelism", type=int, default=16)
    args = parser.parse_args()
    if subprocess.run(["scontrol", "ping"], capture_output=True).returncode != 0:
        print("Slurm is not running: start it with scripts/slurm-up.sh")
        return 1
    n, p = args.tasks, args.parallelism
    root = Path(tempfile.mkdtemp(prefix="podsweep-bench-slurm-"))
    prefix = f"b{uuid.uuid4().hex[:6]}-"
    home = root / "slurm-home"
    home.mkdir()
    (home / "config.json").write_text(json.dumps({"slurm_prefix": prefix}))
    results: dict[str, Any] = {}
    try:
        print(f"{n} tasks of `true`, {p} at a time: podsweep on Slurm", flush=True)
        plane = BenchPlane(home, "--cluster", "slurm")
        try:
            plane.cli("project", "create", "bench", "--gpus", "4")
            # the project's account is made in the background: time the job, not that
            while not sh("sacctmgr", "-n", "-P", "show", "assoc", "where",
                         f"account={prefix}bench", "format=user").split():
                time.sleep(0.1)
            submit_s, total_s, seen = plane.run_job("many", n, p)
            detail = plane.api.get("/jobs/bench/many")
            array = next(e["message"].split()[2] for e in detail["events"]
                         if e["kind"] == "Slurm")
            first, last = slurm_span(array)
            results["slurm"] = dict(submit=submit_s, total=total_s, first=first, last=last,
                                    seen=seen)
        finally:
            plane.close()

        print(f"{n} tasks of `true`, {p} at a time: raw sbatch --array", flush=True)
        out = root / "raw"
        out.mkdir()
        submit_r, total_r, seen_r, array_r = raw_sbatch(f"{prefix}bench", f"ps-{prefix}bench", out,
                                                n, p)
        first_r, last_r = slurm_span(array_r)
        results["raw"] = dict(submit=submit_r, total=total_r, first=first_r, last=last_r,
                              seen=seen_r)

        print(f"{n} tasks of `true`, {p} at a time: podsweep on the local cluster",
              flush=True)
        local = BenchPlane(root / "local-home", "--gpus", "4", "--cpus", "64")
        try:
            local.cli("project", "create", "bench", "--gpus", "4")
            submit_l, total_l, _ = local.run_job("many", n, p)
            results["local"] = dict(submit=submit_l, total=total_l)
        finally:
            local.close()

        # the poller's own cost: one squeue --json, as it runs it
        t = []
        for _ in range(20):
            t0 = time.perf_counter()
            sh("squeue", "--json")
            t.append(time.perf_counter() - t0)
        squeue_ms = statistics.median(t) * 1000
    finally:
        clean_slurm(prefix)
        shutil.rmtree(root, ignore_errors=True)

    s, r, loc = results["slurm"], results["raw"], results["local"]
    slurm_run = s["last"] - s["first"]
    raw_run = r["last"] - r["first"]
    print()
    print("| setup | submit | submit to done | ratio to raw sbatch |")
    print("|---|---|---|---|")
    print(f"| raw `sbatch --array` (squeue every 50 ms) | {r['submit']:.2f} s | "
          f"{r['total']:.2f} s | 1.00x |")
    print(f"| podsweep on Slurm | {s['submit']:.2f} s | {s['total']:.2f} s | "
          f"{s['total'] / r['total']:.2f}x |")
    print(f"| podsweep on the local cluster | {loc['submit']:.2f} s | {loc['total']:.2f} s | "
          f"{loc['total'] / r['total']:.2f}x |")
    print()
    print("Where podsweep-on-Slurm's time goes:")
    print(f"- submit (CLI, HTTP, batch script; sbatch follows): {s['submit']:.2f} s "
          f"(raw sbatch alone: {r['submit']:.2f} s)")
    print(f"- Slurm running the array, first start to last end (whole seconds): "
          f"{slurm_run:.0f} s (raw: {raw_run:.0f} s)")
    print(f"- last end in Slurm to the job seen done (Slurm's end is a whole second, so "
          f"up to 1 s too long): {s['seen'] - s['last']:.2f} s; podsweep's poller looks "
          f"every 1 s, {squeue_ms:.0f} ms per squeue --json (raw, squeue every 50 ms: "
          f"{r['seen'] - r['last']:.2f} s)")
    print(f"- the rest (sbatch, Slurm starting the first task): "
          f"{s['total'] - s['submit'] - slurm_run - (s['seen'] - s['last']):.2f} s "
          f"(raw: {r['total'] - r['submit'] - raw_run - (r['seen'] - r['last']):.2f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
