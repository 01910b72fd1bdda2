"""An authenticated API request's latency alone and while 8 clients flood the login form.

Starts a control plane in a temporary home, times ``GET /api/v1/whoami`` with the admin's
token (p50 and p99 over loopback), then times it again while 8 connections of another
process post logins with random names and wrong passwords as fast as they are answered.
Two floods: under the default login limits (most logins are refused before any hash,
HTTP 429), and with the limits raised so that every login is hashed (scrypt, in the
control plane's hashing threads); each flood runs against a control plane of its own.

    python benchmarks/login_flood.py [--requests 300] [--clients 8]

The ratio is the flood's p99 over the quiet p99 of the same control plane.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx

PODSWEEP = str(Path(sys.executable).with_name("podsweep"))
UNLIMITED = {"PODSWEEP_LOGIN_PER_NAME": "1000000000", "PODSWEEP_LOGIN_PER_CLIENT": "1000000000",
             "PODSWEEP_LOGIN_IN_FLIGHT": "1000000000"}


def flood(url: str, clients: int, stop: Any, counts: Any) -> None:
    """In a process of its own: ``clients`` connections posting logins until ``stop``;
    how many got each status, into ``counts``."""
    async def one(http: httpx.AsyncClient, seen: Counter[int]) -> None:
        while not stop.is_set():
            response = await http.post("/login", data={"username": secrets.token_hex(6),
                                                       "password": "wrong"})
            seen[response.status_code] += 1

    async def run() -> Counter[int]:
        seen: Counter[int] = Counter()
        async with httpx.AsyncClient(base_url=url, timeout=120,
                                     limits=httpx.Limits(max_connections=clients)) as http:
            await asyncio.gather(*(one(http, seen) for _ in range(clients)))
        return seen

    counts.update(asyncio.run(run()))


def latencies(http: httpx.Client, n: int) -> list[float]:
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        response = http.get("/api/v1/whoami")
        times.append((time.perf_counter() - t0) * 1000)
        assert response.status_code == 200, response.text
    return times


def p99(times: list[float]) -> float:
    return statistics.quantiles(times, n=100)[98]


def measure(env_extra: dict[str, str], requests: int, clients: int) -> dict[str, Any]:
    home = Path(tempfile.mkdtemp(prefix="podsweep-login-bench-"))
    env = {**os.environ, "PODSWEEP_HOME": str(home), **env_extra}
    subprocess.run([PODSWEEP, "up", "--gpus", "1"], env=env, check=True, capture_output=True)
    try:
        url = json.loads((home / "server.json").read_text())["url"]
        token = json.loads((home / "credentials.json").read_text())["token"]
        with httpx.Client(base_url=url, timeout=120,
                          headers={"Authorization": f"Bearer {token}"}) as http:
            latencies(http, 20)                          # warm
            quiet = latencies(http, requests)
            with multiprocessing.Manager() as manager:
                stop, counts = manager.Event(), manager.dict()
                shared: dict[int, int] = {}
                process = multiprocessing.Process(target=flood,
                                                  args=(url, clients, stop, counts))
                process.start()
                time.sleep(1.0)                          # the flood under way
                t0 = time.perf_counter()
                loaded = latencies(http, requests)
                elapsed = time.perf_counter() - t0
                stop.set()
                process.join(timeout=120)
                shared.update(counts)
        return {"quiet": quiet, "loaded": loaded, "logins": shared,
                "seconds": elapsed + 1.0}
    finally:
        subprocess.run([PODSWEEP, "down"], env=env, capture_output=True)
        shutil.rmtree(home, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--clients", type=int, default=8)
    args = parser.parse_args()
    print(f"GET /api/v1/whoami, {args.requests} requests in a row, over loopback; "
          f"{args.clients} login clients in another process")
    print("| flood | p50 ms | p99 ms | quiet p50 / p99 ms | p99 ratio | logins answered |")
    print("|---|---|---|---|---|---|")
    for label, extra in (("logins, default limits", {}),
                         ("logins, every one hashed", UNLIMITED)):
        result = measure(extra, args.requests, args.clients)
        quiet, loaded = result["quiet"], result["loaded"]
        answered = ", ".join(f"{n} x {code}" for code, n in sorted(result["logins"].items()))
        print(f"| {label} | {statistics.median(loaded):.1f} | {p99(loaded):.1f} | "
              f"{statistics.median(quiet):.1f} / {p99(quiet):.1f} | "
              f"{p99(loaded) / p99(quiet):.2f}x | {answered} in {result['seconds']:.1f} s |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
