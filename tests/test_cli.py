"""``podsweep hpo show``, run as a user runs it: a real process on real journals."""

from __future__ import annotations

import csv
import io
import json
import shutil
import subprocess
import sys
from pathlib import Path

import podsweep.hpo as hpo

GOLDEN = Path(__file__).parent / "golden" / "hpo-format1.jsonl"
TRAINER = Path(__file__).parent / "pruned_trainer.py"
PODSWEEP = str(Path(sys.executable).with_name("podsweep"))


def podsweep(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([PODSWEEP, *args], capture_output=True, text=True, timeout=60)


def test_show_ranks_trials_and_marks_the_best(tmp_path):
    shutil.copy(GOLDEN, tmp_path / "hpo.jsonl")
    out = podsweep("hpo", "show", str(tmp_path / "hpo.jsonl"))
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0] == ("Experiment hpo1-0f3a9c (grid search, 12 configurations): 4 trials "
                        "handed out — 1 failed, 2 finished, 1 lost")
    assert lines[1].split() == ["TRIAL", "STATUS", "ATTEMPTS", "EPOCHS", "BATCH_SIZE", "LR",
                                "ACCURACY", "LOSS"]
    assert lines[2].split() == ["best", "2", "finished", "2", "3", "32", "0.1", "0.93", "0.2"]
    assert [line.split()[0] for line in lines[3:6]] == ["3", "4", "1"]
    assert lines[-1] == ("Best by accuracy (max): trial #2 {'batch_size': 32, 'lr': 0.1} "
                         "accuracy=0.93")


def test_show_ranks_by_a_loss_ascending_and_exports(tmp_path):
    shutil.copy(GOLDEN, tmp_path / "hpo.jsonl")
    out = podsweep("hpo", "show", str(tmp_path), "--metric", "loss")
    assert out.stdout.splitlines()[-1].startswith("Best by loss (min): trial #2")
    rows = list(csv.DictReader(io.StringIO(podsweep("hpo", "show", str(tmp_path),
                                                    "-o", "csv").stdout)))
    assert [r["trial"] for r in rows] == ["1", "2", "3", "4"] and rows[1]["accuracy"] == "0.93"
    data = json.loads(podsweep("hpo", "show", str(tmp_path), "-o", "json").stdout)
    assert data["experiment"] == "hpo1-0f3a9c" and len(data["trials"]) == 4
    yaml_out = podsweep("hpo", "show", str(tmp_path), "-o", "yaml").stdout
    assert 'experiment: "hpo1-0f3a9c"' in yaml_out and "  - id: 1" in yaml_out


def pruned_sweep(hpo_dir: Path) -> Path:
    """Four trials of TPE with ASHA, one process after another: trial 1 runs its 10 epochs,
    trials 2 to 4 are pruned at the first rung, after 2 epochs each (see pruned_trainer)."""
    for _ in range(4):
        run = subprocess.run([sys.executable, str(TRAINER), str(hpo_dir), "tpe-asha"],
                             capture_output=True, text=True, timeout=60)
        assert run.returncode == 0, run.stdout + run.stderr    # a pruned trial exits 0
    return hpo_dir / "tpe-asha"


def test_show_marks_pruned_trials_and_the_epochs_early_stopping_saved(tmp_path):
    experiment = pruned_sweep(tmp_path)
    out = podsweep("hpo", "show", str(experiment))
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0] == ("Experiment tpe-asha (tpe search, up to 4 trials): 4 trials handed "
                        "out — 1 finished, 3 pruned")
    assert lines[1].split() == ["TRIAL", "STATUS", "ATTEMPTS", "EPOCHS", "LR", "WIDTH",
                                "LOSS", "ACCURACY"]
    rows = [line.split() for line in lines[2:6]]
    assert rows[0][:5] == ["best", "1", "finished", "1", "10"]
    assert [r[:4] for r in rows[1:]] == [["2", "pruned@1", "1", "2"], ["3", "pruned@1", "1", "2"],
                                         ["4", "pruned@1", "1", "2"]]
    # ranked by the metric the sweep declared (accuracy, max), not the first one reported
    assert lines[-2].startswith("Best by accuracy (max): trial #1 ")
    assert lines[-1] == "epochs: 16 used of 40 for a full run of every trial (60% saved)"

    by_loss = podsweep("hpo", "show", str(experiment), "--metric", "loss").stdout
    assert by_loss.splitlines()[-2].startswith("Best by loss (min): trial #1 ")

    data = json.loads(podsweep("hpo", "show", str(experiment), "-o", "json").stdout)
    assert (data["metric"], data["mode"], data["pruner"]["name"]) == ("accuracy", "max", "asha")
    assert (data["epochs_used"], data["epochs_full"]) == (16, 40)
    assert [(t["status"], t["epochs"]) for t in data["trials"]] == [
        ("finished", 10), ("pruned", 2), ("pruned", 2), ("pruned", 2)]
    yaml_out = podsweep("hpo", "show", str(experiment), "-o", "yaml").stdout
    assert 'status: "pruned"' in yaml_out and "epochs_used: 16" in yaml_out
    rows_csv = list(csv.DictReader(io.StringIO(podsweep("hpo", "show", str(experiment),
                                                        "-o", "csv").stdout)))
    assert [r["status"] for r in rows_csv] == ["finished", "pruned", "pruned", "pruned"]


def test_show_reads_a_sweep_that_is_still_running(tmp_path):
    s = hpo.Session(tmp_path, "live")
    s.pick(dict(lr=[0.1, 0.01]))
    out = podsweep("hpo", "show", str(tmp_path / "live"))
    assert out.returncode == 0 and "1 running" in out.stdout
    s.report(0, {"accuracy": 0.5})
    with open(tmp_path / "live" / "hpo.jsonl", "ab") as f:
        f.write(b'{"event":"report","tri')         # a write in flight
    out = podsweep("hpo", "show", str(tmp_path / "live"))
    assert out.returncode == 0 and "Best by accuracy (max): trial #1" in out.stdout


def test_bad_input_gets_one_line_and_a_non_zero_exit(tmp_path):
    missing = podsweep("hpo", "show", str(tmp_path / "nope"))
    assert missing.returncode == 1
    assert missing.stderr.strip().splitlines() == [f"error: {tmp_path / 'nope'}: no such file "
                                                   f"or directory"]
    shutil.copy(GOLDEN, tmp_path / "hpo.jsonl")
    bad_mode = podsweep("hpo", "show", str(tmp_path), "--mode", "lowest")
    assert bad_mode.returncode == 2 and "mode must be 'max' or 'min'" in bad_mode.stderr
    bad_output = podsweep("hpo", "show", str(tmp_path), "-o", "xml")
    assert bad_output.returncode == 2 and "Invalid value for '--output'" in bad_output.stderr
    assert podsweep("version").stdout.strip() == "0.1.0"
