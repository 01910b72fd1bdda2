"""A TPE sweep with ASHA on the local control plane: pruned pods exit 0, the job succeeds.

12 pods, 3 at a time, on 4 virtual GPUs; each pod picks a configuration with TPE, reports
6 epochs and stops early when ASHA prunes it. A pruned trial is a result, not a failure:
its pod exits 0, its GPU goes to the next pod, and the journal and `hpo show` say pruned.
"""

from __future__ import annotations

import sys
from pathlib import Path

import podsweep.hpo as hpo

from .conftest import ControlPlane

SCRIPT = """
import time
import podsweep.hpo as hpo

hpo.init("/nfs/hpo")
config = hpo.pick(grid=dict(x=hpo.uniform(0.0, 1.0), c=[0, 1, 2, 3]),
                  strategy=hpo.Strategy.TPE, metric="score", mode="max",
                  pruner=hpo.ASHA(min_epoch=1, reduction_factor=2), trials=12)
trial = hpo.trial()
ceiling = 1 - (config["x"] - 0.3) ** 2 - 0.05 * abs(config["c"] - 2)
for epoch in range((trial.epoch if trial.epoch is not None else -1) + 1, 6):
    time.sleep(0.05)
    hpo.report(epoch=epoch, metrics={"score": ceiling * (1 - 0.5 ** (epoch + 1))})
    if hpo.should_prune():
        print(f"pruned at epoch {epoch}", flush=True)
        break
"""


def test_a_tpe_sweep_with_asha_prunes_pods_that_exit_0(plane: ControlPlane, tmp_path: Path):
    nfs = tmp_path / "nfs"
    nfs.mkdir()
    script = tmp_path / "train.py"
    script.write_text(SCRIPT)
    plane.run("project", "create", "team-a", "--gpus", "4")
    plane.run("submit", "sweep", "-p", "team-a", "-g", "1", "--parallelism", "3",
              "--completions", "12", "-v", f"{nfs}:/nfs/hpo", "--", sys.executable,
              str(script))
    job = plane.until("the sweep done", lambda: (lambda j: j if j["job"]["status"] in (
        "Succeeded", "Failed") else None)(plane.job("sweep", "team-a")), timeout=180)
    assert job["job"]["status"] == "Succeeded"
    assert job["job"]["succeeded"] == 12 and job["job"]["failed"] == 0

    results = hpo.results(nfs / f"sweep-{job['job']['uid']}")
    statuses = [t.status for t in results]
    assert len(results) == 12 and set(statuses) <= {"finished", "pruned"}
    assert "pruned" in statuses and "finished" in statuses
    assert all(t.epochs < 6 for t in results if t.status == "pruned")
    assert results.epochs_used < results.epochs_full == 6 * 12
    logs = [plane.run("logs", "sweep", "--pod", p["name"]).stdout for p in job["pods"]]
    assert sum("pruned at epoch" in text for text in logs) == statuses.count("pruned")
    show = plane.run("hpo", "show", str(nfs / f"sweep-{job['job']['uid']}")).stdout
    assert "pruned" in show
