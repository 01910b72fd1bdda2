"""The walk-through's training script: real training, preempted by SIGTERM, resumed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import podsweep.hpo as hpo

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "hpo_digits.py"


def start(hpo_dir: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, str(EXAMPLE), "--hpo-dir", str(hpo_dir), *args],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "PODSWEEP_JOB_NAME": "hpo1",
                                 "PODSWEEP_JOB_UID": "t1"})


def test_trains_reports_and_resumes_a_preempted_trial_from_its_checkpoint(tmp_path):
    first = start(tmp_path, "--epochs", "3")
    out, _ = first.communicate(timeout=120)
    assert first.returncode == 0, out
    assert "Using configuration: {'batch_size': 32, 'lr': 1}" in out

    victim = start(tmp_path, "--epochs", "6", "--epoch-seconds", "0.5")
    assert victim.stdout is not None
    lines = []
    while not any(line.startswith("epoch 1:") for line in lines):
        line = victim.stdout.readline()
        assert line, "".join(lines)
        lines.append(line)
    victim.send_signal(signal.SIGTERM)
    victim.wait(timeout=60)
    assert victim.returncode == -signal.SIGTERM

    resumed = start(tmp_path, "--epochs", "6")
    out, _ = resumed.communicate(timeout=120)
    assert resumed.returncode == 0, out
    assert "Picked preempted HPO experiment #2" in out
    assert "Resuming from checkpoint" in out
    assert "epoch 0:" not in out and "epoch 5:" in out

    trials = hpo.results(tmp_path / "hpo1-t1")
    assert [t.status for t in trials] == ["finished", "finished"]
    second = trials[1]
    assert second.attempts == 2 and second.config == {"batch_size": 32, "lr": 0.1}
    epochs = [r.epoch for r in second.reports]
    assert epochs[-4:] == [2, 3, 4, 5] and epochs[0] == 0
    assert all(0.0 <= r.metrics["accuracy"] <= 1.0 for r in second.reports)
    assert second.last("accuracy") > 0.5     # it learned: 10 digits, chance is 0.1
