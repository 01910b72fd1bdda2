"""The local control plane's cost per pod as a job grows, and the API's latency meanwhile.

For jobs of 10^2, 10^3 and 10^4 completions (10^5 too with ``--full``) of ``true``, each
in a fresh control plane with 4 virtual GPUs and 4 CPUs, one of each per pod and
``parallelism`` equal to ``completions`` (the shape of issue 10's submit: everything
pending at once, 4 running):

- wall time per pod, from the API call that submits the job to its end as the control
  plane recorded it;
- the server's CPU time per pod (user + system, from ``/proc``; the pod supervisors are
  processes of their own and not counted);
- ``GET /api/v1/jobs`` p50 / p99 / max, asked every 50 ms by a second client while the job
  runs (its answers are also how the benchmark sees the job end).

Scheduling work that grew with the job's size would show as per-pod ratios above 1 against
the smallest job. The machine is shared: its load moves every number here, the ratios less.

    python benchmarks/scheduler_scale.py [--full] [--sizes 100,1000]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from plane import Plane

from podsweep.client import Client

PROBE_EVERY = 0.05


def server_cpu(pid: int) -> float:
    """Seconds of CPU the process has used, user and system."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass
class Row:
    pods: int
    wall: float
    cpu: float
    p50_ms: float
    p99_ms: float
    max_ms: float
    requests: int


def run(root: Path, pods: int) -> Row:
    plane = Plane(root / f"home-{pods}", "--gpus", "4", "--cpus", "4")
    try:
        plane.cli("project", "create", "bench", "--gpus", "4")
        server = json.loads((plane.home / "server.json").read_text())
        pid = int(server["pid"])
        token = json.loads((plane.home / "credentials.json").read_text())["token"]
        probe = Client(server["url"], token)
        latencies: list[float] = []
        finished: dict[str, Any] = {}
        done = threading.Event()

        def prober() -> None:
            while not done.is_set():
                t = time.perf_counter()
                jobs = probe.get("/jobs")
                latencies.append((time.perf_counter() - t) * 1000)
                job = next((j for j in jobs if j["name"] == "scale"), None)
                if job is not None and job["status"] in ("Succeeded", "Failed"):
                    finished.update(job)
                    done.set()
                done.wait(PROBE_EVERY)

        cpu0 = server_cpu(pid)
        t0 = time.time()
        plane.api.post("/jobs", {"name": "scale", "project": "bench", "command": ["true"],
                                 "gpus": 1, "parallelism": pods, "completions": pods})
        thread = threading.Thread(target=prober)
        thread.start()
        thread.join()
        cpu = server_cpu(pid) - cpu0
        assert finished["succeeded"] == pods, finished
        latencies.sort()
        return Row(pods, float(finished["finished"]) - t0, cpu,
                   statistics.median(latencies),
                   latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))],
                   latencies[-1], len(latencies))
    finally:
        plane.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--full", action="store_true", help="10^5 completions too")
    parser.add_argument("--sizes", help="comma-separated job sizes instead (e.g. 100,1000)")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")] if args.sizes else \
        [100, 1_000, 10_000] + ([100_000] if args.full else [])
    rows: list[Row] = []
    for pods in sizes:
        print(f"{pods} pods of `true`, 1 GPU each, parallelism {pods}, on 4 GPUs", flush=True)
        root = Path(tempfile.mkdtemp(prefix="podsweep-scale-"))
        try:
            rows.append(run(root, pods))
            print(f"  {rows[-1]}", flush=True)
        finally:
            # 10^5 pods leave 10^5 directories: minutes to remove on a busy machine
            shutil.rmtree(root, ignore_errors=True)
    base = rows[0]
    print()
    print("| completions | wall | per pod | ratio | server CPU per pod | ratio | "
          "GET /jobs p50 / p99 / max (n) |")
    print("|---|---|---|---|---|---|---|")
    for row in rows:
        per_pod = row.wall / row.pods * 1000
        cpu_per_pod = row.cpu / row.pods * 1000
        print(f"| {row.pods:,} | {row.wall:.1f} s | {per_pod:.2f} ms | "
              f"{per_pod / (base.wall / base.pods * 1000):.2f}x | {cpu_per_pod:.2f} ms | "
              f"{cpu_per_pod / (base.cpu / base.pods * 1000):.2f}x | "
              f"{row.p50_ms:.1f} / {row.p99_ms:.1f} / {row.max_ms:.1f} ms ({row.requests}) |")
    print(f"\nload average: {os.getloadavg()[0]:.1f} (machine: {os.cpu_count()} CPUs)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
