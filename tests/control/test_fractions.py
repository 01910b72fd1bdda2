"""Fractional GPUs on a real control plane: pods of ``-g 0.5`` share GPUs two by two, each
told its share, a project claiming its quota preempts another's borrowed halves, and where
CUDA MPS runs, a pod gets the limits that enforce its share."""

from __future__ import annotations

import socket
from pathlib import Path

from .conftest import ControlPlane

# Each pod records what it was given, then waits for the test's go (bounded: a pod left
# waiting fails rather than hang): the pods that recorded are the ones running at once.
WAIT = ('echo "$CUDA_VISIBLE_DEVICES $PODSWEEP_GPU_FRACTION $XLA_PYTHON_CLIENT_MEM_FRACTION"'
        ' > {out}/$PODSWEEP_POD_NAME; i=0; while [ ! -e {out}/go ] && [ $i -lt 1200 ]; '
        'do sleep 0.1; i=$((i+1)); done; [ -e {out}/go ]')


def records(out: Path) -> dict[str, list[str]]:
    return {p.name: p.read_text().split() for p in out.iterdir() if p.name != "go"}


def two_teams(plane: ControlPlane, tmp_path: Path, quota_b: int) -> tuple[Path, Path]:
    """team-a with a quota of 2 GPUs, team-b with ``quota_b``; where each one's pods record."""
    plane.run("project", "create", "team-a", "--gpus", "2")
    plane.run("project", "create", "team-b", "--gpus", str(quota_b))
    outs = tmp_path / "a", tmp_path / "b"
    for out in outs:
        out.mkdir()
    return outs


def test_half_gpu_pods_run_two_to_a_gpu_each_told_its_share(plane: ControlPlane,
                                                            tmp_path: Path):
    plane.run("project", "create", "team-a", "--gpus", "4")
    out = tmp_path / "out"
    out.mkdir()
    plane.run("submit", "half", "-p", "team-a", "-g", "0.5", "--parallelism", "6",
              "--completions", "6", "--", "sh", "-c", WAIT.format(out=out))
    seen = plane.until("6 pods running at once", lambda: len(records(out)) == 6 and
                       records(out), timeout=120)
    for gpus, fraction, jax in seen.values():
        assert gpus in {"0", "1", "2", "3"} and fraction == jax == "0.5"
    per_gpu = [list(seen.values()).count([g, "0.5", "0.5"]) for g in "0123"]
    assert max(per_gpu) == 2 and sum(per_gpu) == 6, per_gpu
    # the views: each GPU's shares, the job's and the project's GPUs as numbers
    status = plane.json("status")
    shares = {g["index"]: [(s["pod"], s["fraction"]) for s in g.get("shares", [])]
              for g in status["gpus"]}
    assert sorted(pod for held in shares.values() for pod, _ in held) == sorted(seen)
    assert all(f == 0.5 and len(held) <= 2 for held in shares.values() for _, f in held)
    for index, held in shares.items():
        assert all(seen[pod][0] == str(index) for pod, _ in held)
    job = plane.job("half", "team-a")
    assert job["job"]["gpus"] == 0.5 and job["job"]["allocated"] == 3
    assert all(p["fraction"] == 0.5 for p in job["pods"])
    assert plane.json("project", "list")[0]["allocated"] == 3
    shown = plane.run("get", "half", "-p", "team-a").stdout
    assert "GPUs per pod: 0.5" in " ".join(shown.split())
    assert any(f"{seen[p][0]} (0.5)" in line for line in shown.splitlines() for p in seen)
    assert "(0.5)" in plane.run("status").stdout
    (out / "go").touch()
    job = plane.until("half done", lambda: (j := plane.job("half", "team-a"))["job"]
                      ["status"] in ("Succeeded", "Failed") and j, timeout=120)
    assert job["job"]["status"] == "Succeeded"


def test_a_fraction_is_refused_in_one_line(plane: ControlPlane):
    plane.run("project", "create", "team-a", "--gpus", "1")
    for bad in ("1.5", "-0.5", "0.333", "half"):
        proc = plane.run("submit", "x", "-p", "team-a", "-g", bad, "--", "true", check=False)
        assert proc.returncode != 0
        assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
        assert f"-g {bad}" in proc.stderr


def test_a_project_claiming_its_quota_preempts_borrowed_halves(plane: ControlPlane,
                                                               tmp_path: Path):
    out_a, out_b = two_teams(plane, tmp_path, 2)
    plane.run("submit", "halves", "-p", "team-a", "-g", "0.5", "--parallelism", "8",
              "--completions", "8", "--grace-period", "2", "--", "sh", "-c",
              WAIT.format(out=out_a))
    plane.until("team-a fills the 4 GPUs", lambda: len(records(out_a)) == 8, timeout=120)
    plane.run("submit", "whole", "-p", "team-b", "-g", "1", "--parallelism", "2",
              "--completions", "2", "--", "sh", "-c", WAIT.format(out=out_b))
    seen_b = plane.until("team-b runs within its quota", lambda: len(records(out_b)) == 2
                         and records(out_b), timeout=120)
    projects = plane.until("team-a back at its quota", lambda: (
        ps := {p["name"]: p for p in plane.json("project", "list")})["team-a"]["allocated"]
        == 2 and ps, timeout=120)
    assert projects["team-b"]["allocated"] == 2
    job = plane.job("halves", "team-a")
    assert sum(e["kind"] == "Preempted" for e in job["events"]) == 4
    assert job["job"]["running"] == 4
    # team-b's GPUs are its own: no half of team-a's is left on them
    status = plane.json("status")
    b_gpus = {int(g) for g, *_ in seen_b.values()}
    for gpu in status["gpus"]:
        if gpu["index"] in b_gpus:
            assert not gpu.get("shares") and gpu["project"] == "team-b"
    (out_a / "go").touch()
    (out_b / "go").touch()


MPS_VARIABLES = ("CUDA_MPS_PIPE_DIRECTORY", "CUDA_MPS_ACTIVE_THREAD_PERCENTAGE",
                 "CUDA_MPS_PINNED_DEVICE_MEM_LIMIT")
SHOW_MPS = "; ".join(f'echo "{k}=${{{k}-unset}}"' for k in MPS_VARIABLES)


def test_with_mps_running_a_fractional_pod_gets_the_limits_it_enforces(tmp_path: Path):
    """No GPU and no MPS here: the control daemon's pipe directory is faked, a directory
    named by CUDA_MPS_PIPE_DIRECTORY holding a UNIX socket named ``control``, which is what
    podsweep looks for. The GPUs are virtual, of unknown memory, so a pod gets its thread
    share and no memory limit (tests/test_gpu_fractions.py covers that limit); what CUDA
    does with both is NVIDIA's."""
    mps = tmp_path / "mps"
    mps.mkdir()
    daemon = socket.socket(socket.AF_UNIX)
    daemon.bind(str(mps / "control"))
    plane = ControlPlane(tmp_path / "home")
    plane.env["CUDA_MPS_PIPE_DIRECTORY"] = str(mps)
    plane.run("up", "--gpus", "1")
    try:
        plane.run("project", "create", "team-a", "--gpus", "1")

        def run(name: str, gpus: str) -> dict[str, str]:
            plane.run("submit", name, "-p", "team-a", "-g", gpus, "--", "sh", "-c", SHOW_MPS)
            job = plane.until(f"{name} done", lambda: (j := plane.job(name, "team-a"))
                              ["job"]["status"] in ("Succeeded", "Failed") and j, timeout=120)
            assert job["job"]["status"] == "Succeeded", job
            log = plane.run("logs", name, "-p", "team-a").stdout
            return dict(line.split("=", 1) for line in log.split())

        assert run("third", "0.33") == {"CUDA_MPS_PIPE_DIRECTORY": str(mps),
                                        "CUDA_MPS_ACTIVE_THREAD_PERCENTAGE": "33",
                                        "CUDA_MPS_PINNED_DEVICE_MEM_LIMIT": "unset"}
        # a whole GPU is the pod's own: it connects to the daemon, with no limit
        assert run("whole", "1") == {"CUDA_MPS_PIPE_DIRECTORY": str(mps),
                                     "CUDA_MPS_ACTIVE_THREAD_PERCENTAGE": "unset",
                                     "CUDA_MPS_PINNED_DEVICE_MEM_LIMIT": "unset"}
        # MPS is looked for at each start: once its daemon is gone, a share is a contract
        daemon.close()
        (mps / "control").unlink()
        assert run("after", "0.5") == dict.fromkeys(MPS_VARIABLES, "unset")
    finally:
        plane.stop()
        daemon.close()


def test_a_quota_claim_reclaims_a_gpu_from_a_borrower_left_below_its_share(tmp_path: Path):
    """Fragmentation, on 2 GPUs: team-b borrows two thirds of GPU 0; team-a, with a quota of
    2, runs 3/4 on GPU 1 and claims another 3/4, which only both of team-b's pods make room
    for, leaving team-b below its fair share (1/2). In-quota beats over-quota: both go,
    though every pod borrows its CPU (the default CPU quota of 0)."""
    plane = ControlPlane(tmp_path / "home")
    plane.run("up", "--gpus", "2", "--cpus", "16")
    try:
        reclaim(plane, tmp_path)
    finally:
        plane.stop()


def reclaim(plane: ControlPlane, tmp_path: Path) -> None:
    out_a, out_b = two_teams(plane, tmp_path, 0)
    plane.run("submit", "thirds", "-p", "team-b", "-g", "0.33", "--parallelism", "2",
              "--completions", "2", "--grace-period", "2", "--", "sh", "-c",
              WAIT.format(out=out_b))
    first = plane.until("team-b's two on one GPU", lambda: len(records(out_b)) == 2 and
                        records(out_b), timeout=120)
    assert len({gpu for gpu, *_ in first.values()}) == 1
    plane.run("submit", "big", "-p", "team-a", "-g", "0.75", "--parallelism", "2",
              "--completions", "2", "--", "sh", "-c", WAIT.format(out=out_a))
    seen = plane.until("team-a's two running", lambda: len(records(out_a)) == 2 and
                       records(out_a), timeout=120)
    assert sorted(gpu for gpu, *_ in seen.values()) == ["0", "1"]
    job = plane.job("thirds", "team-b")
    assert sum(e["kind"] == "Preempted" for e in job["events"]) == 2
    assert job["job"]["running"] == 0       # 1/4 is left on each GPU: they wait
    (out_a / "go").touch()
    (out_b / "go").touch()
