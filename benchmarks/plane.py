"""A control plane for the benchmarks: ``podsweep up`` in a fresh home, the CLI and the API.

Used by ``scheduler.py`` and ``slurm.py``, which run as scripts from this folder.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

PODSWEEP = str(Path(sys.executable).with_name("podsweep"))


class Plane:
    def __init__(self, home: Path, *up: str) -> None:
        self.home = home
        self.env = {**os.environ, "PODSWEEP_HOME": str(home)}
        for key in ("PODSWEEP_PROJECT", "PODSWEEP_TOKEN", "PODSWEEP_URL"):
            self.env.pop(key, None)
        self.cli("up", *up)
        from podsweep.client import Client

        creds = json.loads((home / "credentials.json").read_text())
        server = json.loads((home / "server.json").read_text())
        self.api = Client(server["url"], creds["token"])

    def cli(self, *args: str) -> str:
        return subprocess.run([PODSWEEP, *args], env=self.env, check=True,
                              capture_output=True, text=True).stdout

    def wait(self, project: str, name: str) -> dict[str, Any]:
        """The job, once it has ended, as the job list shows it."""
        # the job list is O(jobs); the job's own page lists every pod, too heavy to poll
        while True:
            jobs = self.api.get("/jobs", project=project)
            job: dict[str, Any] = next(j for j in jobs if j["name"] == name)
            if job["status"] in ("Succeeded", "Failed"):
                return job
            time.sleep(0.05)

    def close(self) -> None:
        subprocess.run([PODSWEEP, "down"], env=self.env, capture_output=True)
