"""A sweep survives its pods dying, on Slurm (issue 9): the local test's scenario.

A 6-point grid as an array of 6 tasks, 2 at a time, backoff limit 3; the training process
of task oom-1-0 is SIGKILLed mid-trial, as the OOM killer would. podsweep requeues the
task, Slurm runs the index again (oom-1-1, one task per array index at a time), and the
rerun takes the dead task's trial over at once and resumes it from its checkpoint.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

from ..control.test_pod_death import check_survived, mid_trial, sweep
from .conftest import SlurmPlane

# where the Slurm engine appends a task's output, relative to the control plane's home
SLURM_LOG = "slurm/*/{pod}.log"


def test_a_task_killed_by_the_oom_killer_loses_no_configuration(plane: SlurmPlane,
                                                                 tmp_path: Path):
    # 0.5 s epochs: a task starts later on Slurm, and the kill must land mid-trial
    hpo_dir, marks = sweep(plane, tmp_path, epoch_seconds=0.5)
    mid_trial(plane, SLURM_LOG)
    pid = int((marks / "oom-1-0.pid").read_text().split()[0])
    os.kill(pid, signal.SIGKILL)
    check_survived(plane, hpo_dir, None)
