"""Fixtures for the HPO library's tests: a shared directory and real worker processes.

These tests run under every supported Python (3.9 to 3.13), with nothing but pytest.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Dict, List, Optional

import pytest

WORKER = Path(__file__).with_name("worker.py")
SRC = Path(__file__).resolve().parents[2] / "src"


def events(path: Path) -> List[dict]:
    """Every complete line of a journal; fails if a complete line does not parse."""
    data = path.read_bytes()
    lines = data.split(b"\n")
    if lines and lines[-1] != b"":
        lines = lines[:-1]   # a torn last line, as readers skip it
    return [json.loads(line) for line in lines if line.strip()]


class Workers:
    """Starts worker.py processes over one shared directory and keeps their logs."""

    def __init__(self, root: Path, experiment: str = "exp") -> None:
        self.root = root
        self.experiment = experiment
        self.procs: List[subprocess.Popen] = []
        self.logs: Dict[int, Path] = {}
        (root / "logs").mkdir(exist_ok=True)

    @property
    def journal(self) -> Path:
        return self.root / self.experiment / "hpo.jsonl"

    def start(self, *args: str, stdout: Optional[int] = subprocess.DEVNULL,
              env: Optional[Dict[str, str]] = None) -> subprocess.Popen:
        log = self.root / "logs" / f"w{len(self.procs)}.log"
        log.touch()
        proc = subprocess.Popen(
            [sys.executable, str(WORKER), str(self.root), self.experiment, str(log), *args],
            stdout=stdout, stderr=subprocess.PIPE if stdout == subprocess.PIPE else None,
            env={**os.environ, "PYTHONPATH": str(SRC), **(env or {})},
        )
        self.procs.append(proc)
        self.logs[proc.pid] = log
        return proc

    def records(self) -> List[List[str]]:
        out = []
        for log in self.logs.values():
            if log.exists():
                out += [line.split() for line in log.read_text().splitlines() if line]
        return out

    def stop_all(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.kill()
        for p in self.procs:
            p.wait()


@pytest.fixture
def workers(tmp_path: Path):
    w = Workers(tmp_path)
    yield w
    w.stop_all()
