"""The local control plane's speed, against the floor of starting processes here.

Four measurements, one run:

1. Throughput: 1,000 pods of ``true``, parallelism 2, through podsweep, against
   ``xargs -P 2`` running the same 1,000 commands (the floor). Reported as a ratio.
2. Latency from a pod's exit to its successor's start (the supervisors record both
   times), p50 and p99, from the same run.
3. The walk-through's sweep shape with a fixed 2-second step: 12 pods of ``sleep 2``,
   3 at a time, one GPU each: makespan against the ideal ceil(12/3) x 2 s.
4. The supervisor's floor: the same 1,000 pods through ``PodProcess`` alone (no server,
   no store), under the native supervisor and under the Python one (forked), against the
   same xargs: what the control plane adds is the difference.

The machine is shared: its load moves podsweep's times and xargs's alike, by up to 2x
within a minute. Each throughput is therefore measured in rounds, each against an xargs
run just before it, and the round with the median ratio is reported.

    python benchmarks/scheduler.py [--pods 1000] [--rounds 5]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import selectors
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from plane import Plane

from podsweep.runtime.process import SupervisorKind


def pod_times(home: Path, uid: str) -> list[tuple[float, float]]:
    """(start, end) of each pod of a job, as its supervisor recorded them."""
    spans = []
    for pod_dir in (home / "pods" / uid).iterdir():
        state = json.loads((pod_dir / "state.json").read_text())
        ended = json.loads((pod_dir / "exit.json").read_text())
        spans.append((float(state["started"]), float(ended["finished"])))
    return sorted(spans)


def xargs_floor(pods: int, parallelism: int) -> float:
    t0 = time.perf_counter()
    subprocess.run(["xargs", "-P", str(parallelism), "-n", "1", "sh", "-c", "true"],
                   input="x\n" * pods, text=True, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t0


def supervisor_floor(kind: SupervisorKind, pods: int, parallelism: int, root: Path) -> float:
    """``pods`` pods of ``true``, ``parallelism`` at a time, launched and watched the way the
    control plane does (launch without waiting, pidfd, exit code), and nothing else."""
    from podsweep.runtime import PodLaunch, PodProcess

    env = dict(os.environ)
    sel = selectors.DefaultSelector()
    started = running = 0

    def start() -> None:
        nonlocal started, running
        pod_dir = root / kind / str(started)
        proc = PodProcess.launch(PodLaunch(pod_dir, ["true"], env, None, pod_dir / "pod.log",
                                           30.0), supervisor=kind, wait=False)
        fd = proc.pidfd()
        assert fd is not None
        sel.register(fd, selectors.EVENT_READ, proc)
        started += 1
        running += 1

    t0 = time.perf_counter()
    while started < min(parallelism, pods):
        start()
    while running:
        for key, _ in sel.select():
            sel.unregister(key.fd)
            os.close(key.fd)
            assert key.data.exit_code() == 0
            running -= 1
            if started < pods:
                start()
    elapsed = time.perf_counter() - t0
    sel.close()
    return elapsed


def handoff_latencies(spans: list[tuple[float, float]], parallelism: int) -> list[float]:
    """For each pod after the first wave: its start minus the latest exit before it."""
    ends = sorted(e for _, e in spans)
    out = []
    for start, _ in spans[parallelism:]:
        before = [e for e in ends if e <= start]
        if before:
            out.append(start - before[-1])
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pods", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=5,
                        help="rounds of each throughput measurement, each against an xargs "
                             "run just before it; the median round is reported")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="podsweep-bench-"))
    plane = Plane(root / "home", "--gpus", "4", "--cpus", "64")
    # (podsweep, xargs just before) per round, per measurement: the machine is shared and
    # its load moves both in step, so a round's ratio is steadier than either time
    rounds: dict[str, list[tuple[float, float]]] = {"plane": [], "native": [], "fork": []}
    lat_ms: list[float] = []
    try:
        plane.cli("project", "create", "bench", "--gpus", "4")
        print(f"1. {args.pods} pods of `true`, parallelism 2: xargs -P 2 then podsweep, "
              f"{args.rounds} rounds", flush=True)
        for r in range(args.rounds):
            floor = xargs_floor(args.pods, 2)
            # Through the API, as the CLI does, without timing the CLI's own start-up; until
            # the job's end as the control plane recorded it (same clock, this machine), so
            # that the client's polling neither adds to the time nor loads the server much.
            t0 = time.time()
            plane.api.post("/jobs", {"name": f"many-{r}", "project": "bench",
                                     "command": ["true"], "parallelism": 2,
                                     "completions": args.pods})
            job = plane.wait("bench", f"many-{r}")
            rounds["plane"].append((float(job["finished"]) - t0, floor))
            assert job["succeeded"] == args.pods, job
            lat_ms += (x * 1000 for x in
                       handoff_latencies(pod_times(plane.home, job["uid"]), 2))
        lat_ms.sort()
        p50 = statistics.median(lat_ms)
        p99 = lat_ms[min(len(lat_ms) - 1, int(0.99 * len(lat_ms)))]

        print("2. the walk-through's shape: 12 pods of `sleep 2`, 3 at a time, 1 GPU each",
              flush=True)
        t0 = time.perf_counter()
        plane.api.post("/jobs", {"name": "sweep", "project": "bench", "command": ["sleep", "2"],
                                 "gpus": 1, "parallelism": 3, "completions": 12})
        sweep = plane.wait("bench", "sweep")
        makespan_wall = time.perf_counter() - t0
        spans = pod_times(plane.home, sweep["uid"])
        makespan = max(e for _, e in spans) - min(s for s, _ in spans)
        ideal = math.ceil(12 / 3) * 2.0

        print(f"3. {args.pods} pods of `true` through PodProcess alone (native, then Python "
              f"forked), {args.rounds} rounds", flush=True)
        kinds: tuple[SupervisorKind, ...] = ("native", "fork")
        for r in range(args.rounds):
            for kind in kinds:
                floor = xargs_floor(args.pods, 2)
                rounds[kind].append((supervisor_floor(kind, args.pods, 2, root / f"{kind}{r}"),
                                     floor))
    finally:
        plane.close()
        shutil.rmtree(root, ignore_errors=True)
    median = {key: sorted(pairs, key=lambda p: p[0] / p[1])[len(pairs) // 2]
              for key, pairs in rounds.items()}

    print()
    print(f"Each throughput: the median of {args.rounds} rounds by ratio, each round against "
          f"an xargs run just before it; latencies over all rounds.")
    for key, pairs in rounds.items():
        print(f"  {key}: " + ", ".join(f"{p:.2f}/{x:.2f}={p / x:.2f}x" for p, x in pairs))
    print()
    print("| measurement | podsweep | reference | ratio |")
    print("|---|---|---|---|")
    ours, floor = median["plane"]
    print(f"| {args.pods} pods of `true`, parallelism 2 | {ours:.2f} s | xargs -P 2: "
          f"{floor:.2f} s | {ours / floor:.2f}x |")
    print(f"| exit -> successor start, p50 / p99 | {p50:.1f} / {p99:.1f} ms | target "
          f"20 / 100 ms | |")
    print(f"| 12 x 2 s pods, 3 at a time: makespan (first start to last exit) | "
          f"{makespan:.2f} s | ideal {ideal:.0f} s | {makespan / ideal:.3f}x |")
    print(f"| same, submit to Succeeded seen by the client | {makespan_wall:.2f} s | "
          f"ideal {ideal:.0f} s | {makespan_wall / ideal:.3f}x |")
    for kind, name in (("native", "native (C)"), ("fork", "Python, forked")):
        ran, floor = median[kind]
        print(f"| supervisor floor: {args.pods} pods of `true`, PodProcess alone, {name} | "
              f"{ran:.2f} s | xargs -P 2: {floor:.2f} s | {ran / floor:.2f}x |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
