"""``-g``: whole GPUs as ever, or an exact share of one GPU in (0, 1), and nothing else."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import pytest

from podsweep.cluster.podenv import mps_variables, pod_env
from podsweep.errors import UsageError
from podsweep.model import JobSpec, format_gpus, gpus_number, parse_gpus
from podsweep.runtime import gpus as gpus_module
from podsweep.runtime import mps_pipe_directory


@pytest.mark.parametrize(("given", "parsed"), [
    ("0", 0), ("1", 1), ("8", 8), (" 2 ", 2), (2, 2), ("1.0", 1), (2.0, 2),
    ("0.5", Fraction(1, 2)), ("0.25", Fraction(1, 4)), ("0.33", Fraction(33, 100)),
    ("1/3", Fraction(1, 3)), ("0.01", Fraction(1, 100)), ("0.75", Fraction(3, 4)),
    # JSON carries a share as a float: it is read as the share it names, exactly
    (0.5, Fraction(1, 2)), (0.33, Fraction(33, 100)), (1 / 3, Fraction(1, 3)),
    (Fraction(1, 2), Fraction(1, 2)),
])
def test_whole_numbers_and_shares_of_one_gpu_are_read_exactly(given, parsed):
    got = parse_gpus(given)
    assert got == parsed
    assert type(got) is type(parsed)      # a whole number stays an int


@pytest.mark.parametrize(("given", "says"), [
    ("1.5", "more than one GPU is a whole number"), (1.5, "more than one GPU"),
    ("-0.5", "expected a whole number"), ("-1.5", "expected a whole number"),
    ("0.333", "denominator of at most 100"), (0.333, "denominator of at most 100"),
    ("1/1000", "denominator of at most 100"), ("two", "expected a whole number"),
    ("", "expected a whole number"), ("1/0", "expected a whole number"),
    (True, "expected a whole number"), (float("nan"), "expected"), (float("inf"), "expected"),
    (None, "expected"),
])
def test_anything_else_is_refused_in_one_line(given, says):
    with pytest.raises(UsageError, match=says) as caught:
        parse_gpus(given)
    assert "\n" not in str(caught.value)
    assert str(caught.value).startswith("-g ")


def test_a_whole_gpu_job_keeps_its_json_and_a_share_round_trips_as_a_number():
    whole = JobSpec.from_request({"name": "a", "project": "p", "command": ["x"], "gpus": 2})
    assert whole.gpus == 2 and json.dumps(whole.to_dict()["gpus"]) == "2"
    half = JobSpec.from_request({"name": "a", "project": "p", "command": ["x"], "gpus": 0.5})
    assert half.gpus == Fraction(1, 2)
    assert half.to_dict()["gpus"] == 0.5
    third = JobSpec(name="a", project="p", command=["x"], gpus=Fraction(1, 3))
    stored = json.loads(json.dumps(third.to_dict()))
    assert JobSpec.from_dict(stored).gpus == Fraction(1, 3)
    assert JobSpec.from_request(stored).gpus == Fraction(1, 3)


def test_a_negative_whole_number_is_refused_as_ever():
    with pytest.raises(UsageError, match="--gpu must be at least 0, got -1"):
        JobSpec.from_request({"name": "a", "project": "p", "command": ["x"], "gpus": "-1"})


def test_a_spec_refuses_a_share_it_could_not_store_exactly():
    with pytest.raises(UsageError, match="denominator"):
        JobSpec(name="a", project="p", command=["x"], gpus=Fraction(1, 1000))
    with pytest.raises(UsageError):
        JobSpec.from_request({"name": "a", "project": "p", "command": ["x"], "gpus": 1.5})


def test_gpus_are_shown_as_people_read_them():
    assert [format_gpus(g) for g in (0, 2, Fraction(1, 2), Fraction(3, 2), Fraction(1, 3),
                                     0.5, 1.5, 1 / 3, Fraction(1, 8))] == \
        ["0", "2", "0.5", "1.5", "0.33", "0.5", "1.5", "0.33", "0.125"]
    assert gpus_number(Fraction(2, 2)) == 1 and isinstance(gpus_number(Fraction(4, 2)), int)


def test_kubernetes_refuses_a_share_in_one_line():
    # (Slurm runs a share as GPU shards, or refuses it: tests/cluster/test_slurm_script.py)
    half = JobSpec(name="a", project="p", command=["x"], gpus=Fraction(1, 2), image="img")
    with pytest.raises(UsageError) as caught:
        half.whole_gpus("Kubernetes")
    assert str(caught.value).startswith("-g 0.5: fractional GPUs run on the local cluster "
                                        "and on Slurm's GPU shards;")
    assert JobSpec(name="a", project="p", command=["x"], gpus=2).whole_gpus("Kubernetes") == 2


def test_render_refuses_a_share_as_kubernetes_would(tmp_path):
    podsweep = str(Path(sys.executable).with_name("podsweep"))
    env = {**os.environ, "PODSWEEP_HOME": str(tmp_path)}
    proc = subprocess.run([podsweep, "render", "a", "-p", "team-a", "-g", "0.5", "-i", "img",
                           "--", "true"], capture_output=True, text=True, env=env, timeout=60)
    assert proc.returncode != 0
    assert proc.stderr.strip().splitlines() == [
        "error: -g 0.5: fractional GPUs run on the local cluster and on Slurm's GPU "
        "shards; the Kubernetes cluster gives a pod whole GPUs (-g 1)"]
    whole = subprocess.run([podsweep, "render", "a", "-p", "team-a", "-g", "1", "-i", "img",
                            "--", "true"], capture_output=True, text=True, env=env, timeout=60)
    assert whole.returncode == 0 and 'nvidia.com/gpu: "1"' in whole.stdout


def test_a_pod_holding_a_share_is_told_it():
    spec = JobSpec(name="a", project="p", command=["x"], gpus=Fraction(1, 4))
    env = pod_env(spec, job_uid="u", pod_name="a-0-0", index=0, attempt=0, gpus=(2,),
                  base={}, fraction=Fraction(1, 4))
    assert (env["CUDA_VISIBLE_DEVICES"], env["PODSWEEP_GPU_FRACTION"],
            env["XLA_PYTHON_CLIENT_MEM_FRACTION"]) == ("2", "0.25", "0.25")
    # the job may leave JAX headroom below its share; its share itself is podsweep's word
    headroom = JobSpec(name="a", project="p", command=["x"], gpus=Fraction(1, 2),
                       env={"XLA_PYTHON_CLIENT_MEM_FRACTION": "0.45",
                            "PODSWEEP_GPU_FRACTION": "1"})
    env = pod_env(headroom, job_uid="u", pod_name="a-0-0", index=0, attempt=0, gpus=(0,),
                  base={}, fraction=Fraction(1, 2))
    assert (env["PODSWEEP_GPU_FRACTION"], env["XLA_PYTHON_CLIENT_MEM_FRACTION"]) == \
        ("0.5", "0.45")
    whole = pod_env(spec, job_uid="u", pod_name="a-0-0", index=0, attempt=0, gpus=(0, 1),
                    base={})
    assert "PODSWEEP_GPU_FRACTION" not in whole and \
        "XLA_PYTHON_CLIENT_MEM_FRACTION" not in whole


@pytest.fixture
def mps_dir(tmp_path: Path):
    """A fake MPS control daemon's pipe directory: a UNIX socket named ``control``."""
    directory = tmp_path / "mps"
    directory.mkdir()
    daemon = socket.socket(socket.AF_UNIX)
    daemon.bind(str(directory / "control"))
    yield directory
    daemon.close()


def test_mps_is_found_by_its_control_socket_where_its_daemon_lives(mps_dir, tmp_path,
                                                                   monkeypatch):
    named = {"CUDA_MPS_PIPE_DIRECTORY": str(mps_dir)}
    assert mps_pipe_directory(named) == mps_dir
    # NVIDIA's default directory where none is named
    monkeypatch.setattr(gpus_module, "MPS_PIPE_DIRECTORY", str(mps_dir))
    assert mps_pipe_directory({}) == mps_dir
    # the daemon's PID file: a live process, or a daemon killed without `quit`
    pid_file = mps_dir / "nvidia-cuda-mps-control.pid"
    pid_file.write_text(f"{os.getpid()}\n")
    assert mps_pipe_directory(named) == mps_dir
    dead = subprocess.Popen(["true"])
    dead.wait()
    pid_file.write_text(f"{dead.pid}\n")
    assert mps_pipe_directory(named) is None
    pid_file.unlink()
    # no directory, no control socket, or a plain file in its place: no MPS
    assert mps_pipe_directory({"CUDA_MPS_PIPE_DIRECTORY": str(tmp_path / "none")}) is None
    (mps_dir / "control").unlink()
    assert mps_pipe_directory(named) is None
    (mps_dir / "control").write_text("")
    assert mps_pipe_directory(named) is None


@pytest.mark.parametrize(("fraction", "memory", "limits"), [
    (Fraction(1, 2), 143771, {"CUDA_MPS_ACTIVE_THREAD_PERCENTAGE": "50",
                              "CUDA_MPS_PINNED_DEVICE_MEM_LIMIT": "0=71885M"}),
    # rounded down: three pods of 1/3 never add up past the GPU
    (Fraction(1, 3), 81559, {"CUDA_MPS_ACTIVE_THREAD_PERCENTAGE": "33",
                             "CUDA_MPS_PINNED_DEVICE_MEM_LIMIT": "0=27186M"}),
    (Fraction(1, 100), 100, {"CUDA_MPS_ACTIVE_THREAD_PERCENTAGE": "1",
                             "CUDA_MPS_PINNED_DEVICE_MEM_LIMIT": "0=1M"}),
    # a virtual GPU's memory is unknown: the thread share only
    (Fraction(3, 4), None, {"CUDA_MPS_ACTIVE_THREAD_PERCENTAGE": "75"}),
])
def test_mps_limits_are_the_share_of_threads_and_of_the_gpus_memory(fraction, memory, limits):
    assert mps_variables(fraction, memory) == limits


def test_a_pod_is_given_mps_limits_only_where_mps_runs(mps_dir):
    spec = JobSpec(name="a", project="p", command=["x"], gpus=Fraction(1, 2),
                   env={"CUDA_MPS_ACTIVE_THREAD_PERCENTAGE": "100"})
    env = pod_env(spec, job_uid="u", pod_name="a-0-0", index=0, attempt=0, gpus=(3,),
                  base={}, fraction=Fraction(1, 2), gpu_memory_mib=1000, mps=mps_dir)
    # the share is enforced: the job's -e does not raise it
    assert (env["CUDA_VISIBLE_DEVICES"], env["CUDA_MPS_PIPE_DIRECTORY"],
            env["CUDA_MPS_ACTIVE_THREAD_PERCENTAGE"], env["CUDA_MPS_PINNED_DEVICE_MEM_LIMIT"]) \
        == ("3", str(mps_dir), "50", "0=500M")
    whole = pod_env(spec, job_uid="u", pod_name="a-0-0", index=0, attempt=0, gpus=(3,),
                    base={}, gpu_memory_mib=1000, mps=mps_dir)
    assert whole["CUDA_MPS_PIPE_DIRECTORY"] == str(mps_dir)
    assert "CUDA_MPS_PINNED_DEVICE_MEM_LIMIT" not in whole
    without = pod_env(spec, job_uid="u", pod_name="a-0-0", index=0, attempt=0, gpus=(3,),
                      base={}, fraction=Fraction(1, 2), gpu_memory_mib=1000)
    assert not {"CUDA_MPS_PIPE_DIRECTORY", "CUDA_MPS_PINNED_DEVICE_MEM_LIMIT"} & set(without)
