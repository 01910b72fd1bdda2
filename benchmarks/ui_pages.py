"""Web UI page loads with a big store: the jobs page with 2,000 jobs (target: under 300 ms).

Starts a control plane in a temporary home, writes 2,000 finished jobs into its store,
logs in as the admin, and times full page loads of /jobs, the refreshing jobs table, and
/projects, over loopback.

    python benchmarks/ui_pages.py [--jobs 2000] [--repeat 20]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from podsweep.model import JobSpec, JobStatus
from podsweep.store import Store

PODSWEEP = str(Path(sys.executable).with_name("podsweep"))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args()
    home = Path(tempfile.mkdtemp(prefix="podsweep-ui-bench-"))
    env = {**os.environ, "PODSWEEP_HOME": str(home)}
    out = subprocess.run([PODSWEEP, "up", "--gpus", "4", "--cpus", "16"], env=env, check=True,
                         capture_output=True, text=True).stdout
    try:
        password = re.search(r"with the password (\S+)", out)
        assert password, out
        subprocess.run([PODSWEEP, "project", "create", "team-a", "--gpus", "2"], env=env,
                       check=True, capture_output=True)
        store = Store(home / "podsweep.db")
        for i in range(args.jobs):
            job = store.insert_job(f"u{i:07x}", JobSpec(name=f"job-{i}", project="team-a",
                                                        command=["true"]), "admin")
            store.update_job(job.uid, status=JobStatus.SUCCEEDED, finished=time.time(),
                             succeeded=1)
        store.close()
        url = json.loads((home / "server.json").read_text())["url"]
        with httpx.Client(base_url=url, follow_redirects=False) as http:
            http.post("/login", data={"username": "admin", "password": password.group(1)})
            print(f"{args.jobs} jobs in the store; {args.repeat} loads each, over loopback")
            print("| page | p50 ms | max ms | target |")
            print("|---|---|---|---|")
            for path, target in (("/jobs", "300 ms"), ("/jobs/table", ""), ("/projects", "")):
                http.get(path)   # warm
                times = []
                for _ in range(args.repeat):
                    t0 = time.perf_counter()
                    response = http.get(path)
                    times.append((time.perf_counter() - t0) * 1000)
                    assert response.status_code == 200, response.status_code
                rows = response.text.count("<tr")
                print(f"| {path} ({rows} table rows) | {statistics.median(times):.0f} | "
                      f"{max(times):.0f} | {target} |")
    finally:
        subprocess.run([PODSWEEP, "down"], env=env, capture_output=True)
        shutil.rmtree(home, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
