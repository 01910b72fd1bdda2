"""A real control plane for each test: ``podsweep up`` in a fresh home, driven by the CLI.

Everything goes through the ``podsweep`` command as a user would type it; assertions read
its ``-o json`` output. Waiting is bounded: ``until`` fails with the last state seen.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable

import pytest

from ..containers import User

PODSWEEP = str(Path(sys.executable).with_name("podsweep"))


class ControlPlane:
    """``user``: whom the CLI (and so the control plane it starts) runs as; this process's
    user by default. Another user gets a login's environment, and this tree's code."""

    def __init__(self, home: Path, user: User | None = None) -> None:
        self.home = home
        self.user = user
        if user is None or not user.other:
            self.env = {**os.environ, "PODSWEEP_HOME": str(home)}
        else:
            # a relative PYTHONPATH (src) means the tree's code only from this directory
            code = os.pathsep.join(os.path.abspath(p) for p in
                                   os.environ.get("PYTHONPATH", "").split(os.pathsep) if p)
            self.env = user.env({"PODSWEEP_HOME": str(home),
                                 **({"PYTHONPATH": code} if code else {})})
        for key in ("PODSWEEP_PROJECT", "PODSWEEP_TOKEN", "PODSWEEP_URL"):
            self.env.pop(key, None)

    def run(self, *args: str, token: str | None = None, check: bool = True,
            cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
        env = dict(self.env)
        if token is not None:
            env["PODSWEEP_TOKEN"] = token
        argv = [PODSWEEP, *args] if self.user is None else self.user.argv(PODSWEEP, *args)
        proc = subprocess.run(argv, capture_output=True, text=True, env=env,
                              timeout=120, cwd=cwd)
        if check and proc.returncode != 0:
            raise AssertionError(f"podsweep {' '.join(args)} -> {proc.returncode}\n"
                                 f"{proc.stdout}\n{proc.stderr}")
        return proc

    def run_all(self, *calls: list[str]) -> list[subprocess.CompletedProcess[str]]:
        """Several CLI calls at once, each as run() makes it: a dozen one after the other
        (pods' logs) cost seconds of start-up on a loaded machine."""
        with ThreadPoolExecutor(4) as pool:
            return list(pool.map(lambda argv: self.run(*argv), calls))

    def json(self, *args: str, token: str | None = None) -> Any:
        return json.loads(self.run(*args, "-o", "json", token=token).stdout)

    def job(self, name: str, project: str) -> dict[str, Any]:
        data: dict[str, Any] = self.json("get", name, "-p", project)
        return data

    def until(self, what: str, probe: Callable[[], Any], timeout: float = 60,
              every: float = 0.1) -> Any:
        """Probe every ``every`` seconds. A probe through the CLI costs a CPU-bound start-up
        (0.2-0.5 s): a long wait probes less often and leaves the CPU to the pods."""
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            last = probe()
            if last:
                return last
            time.sleep(every)
        raise AssertionError(f"timed out waiting for {what}; last: {last!r}")

    def server_pid(self) -> int:
        return int(json.loads((self.home / "server.json").read_text())["pid"])

    def pod_pids(self) -> list[int]:
        """Every live process whose environment names this home's pods (no stray pods)."""
        pids = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                stat = (entry / "stat").read_text()
                if stat.rsplit(")", 1)[1].split()[0] == "Z":
                    continue
                if str(self.home) in (entry / "cmdline").read_bytes().decode(errors="replace"):
                    pids.append(int(entry.name))
                    continue
                if b"PODSWEEP_POD_NAME=" in (entry / "environ").read_bytes() and \
                        str(self.home).encode() in (entry / "environ").read_bytes():
                    pids.append(int(entry.name))
            except (OSError, IndexError):
                continue
        return pids

    def stop(self) -> None:
        self.run("down", check=False)
        for pid in self.pod_pids():
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)


@pytest.fixture
def plane(tmp_path: Path):
    cp = ControlPlane(tmp_path / "home")
    cp.run("up", "--gpus", "4", "--cpus", "16")   # see docs/local.md: CPUs are scheduled
    yield cp
    cp.stop()
