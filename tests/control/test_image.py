"""``submit -i IMAGE`` on the local cluster: pods in podman containers, with a real podman.

No registry is reachable here: the image is built from this machine's Python and
podsweep.hpo (tests/containers.py), once per session. Where podman is missing these tests
skip, saying so, unless ``PODSWEEP_REQUIRE_PODMAN=1`` (.ci/run), which makes that a failure.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import podsweep.hpo as hpo

from ..containers import podman
from .conftest import PODSWEEP, ControlPlane

TRAINER = Path(__file__).with_name("trainer.py")


def containers(uid: str) -> list[str]:
    """The names of the containers of job ``uid`` that podman still stores, running or not."""
    engine = podman()
    assert engine is not None
    out = subprocess.run([engine, "ps", "-a", "--format", "{{.Names}}", "--filter",
                          f"name=podsweep-{uid}-"], capture_output=True, text=True, check=True)
    return out.stdout.split()


@pytest.fixture
def cplane(plane: ControlPlane, image: str) -> Iterator[ControlPlane]:
    """The plane, and afterwards whatever container of its jobs a failed test left."""
    yield plane
    pods = plane.home / "pods"
    for uid in os.listdir(pods) if pods.is_dir() else []:
        names = containers(uid)
        if names:
            subprocess.run([str(podman()), "rm", "--force", "--time", "0", *names],
                           capture_output=True)


def pods_of(job: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {p["name"]: p for p in job["pods"]}


def finished(plane: ControlPlane, name: str, project: str, timeout: float = 120) -> Any:
    return plane.until(f"{name} finished", lambda: (lambda j: j if j["job"]["status"] in (
        "Succeeded", "Failed") else None)(plane.job(name, project)), timeout=timeout,
        every=0.5)


def test_the_walkthrough_runs_in_an_image(cplane: ControlPlane, image: str,
                                          tmp_path: Path) -> None:
    """The walk-through's sweep with every pod in a container: distinct configurations
    through the shared directory, the lent pod preempted (SIGTERM into its container) and
    its trial resumed from its checkpoint by a rerun, logs, delete; nothing left in podman."""
    plane = cplane
    nfs = tmp_path / "nfs"
    (nfs / "marks").mkdir(parents=True)
    plane.run("project", "create", "team-a", "--gpus", "2")
    plane.run("project", "create", "team-b", "--gpus", "2")
    # the first attempt of the first three pods slowly (the lent one must be mid-trial when
    # team-b comes: 0.5 s epochs lost that race on a loaded machine), the rest fast
    paced = ('case "$PODSWEEP_POD_INDEX-$PODSWEEP_POD_ATTEMPT" in [012]-0) s=1 ;; '
             '*) s=0.1 ;; esac; exec python3 /app/trainer.py /nfs/hpo /nfs/hpo/marks '
             '--epochs 6 --epoch-seconds "$s"')
    plane.run("submit", "hpo1", "-p", "team-a", "-i", image, "-g", "1", "--parallelism", "3",
              "--completions", "6", "-v", f"{nfs}:/nfs/hpo", "-v", f"{TRAINER.parent}:/app:ro",
              "--grace-period", "20", "--", "sh", "-c", paced)
    job = plane.until("3 hpo1 pods running", lambda: (lambda j: j if j["job"]["running"] == 3
                                                      else None)(plane.job("hpo1", "team-a")))
    uid = job["job"]["uid"]
    lent = [e["message"].split()[1] for e in job["events"] if e["kind"] == "Started"][-1]
    log_file = plane.home / "pods" / uid / lent / "pod.log"
    plane.until("the lent pod past its first epoch",
                lambda: log_file.exists() and "epoch 0 done" in log_file.read_text())
    # a container per pod, named after it: the lent one's is there, mid-trial (the others
    # may be ending by now)
    running = containers(uid)
    assert f"podsweep-{uid}-{lent}" in running
    assert set(running) <= {f"podsweep-{uid}-{p['name']}" for p in job["pods"]}

    plane.run("submit", "train", "-p", "team-b", "-i", image, "-g", "2", "--", "sleep", "6")
    job = plane.until("a preemption", lambda: (lambda j: j if any(
        e["kind"] == "Preempted" for e in j["events"]) else None)(plane.job("hpo1", "team-a")))
    preempted = next(e["message"].split()[1].rstrip(":") for e in job["events"]
                     if e["kind"] == "Preempted")
    assert preempted == lent

    job = finished(plane, "hpo1", "team-a")
    assert job["job"]["status"] == "Succeeded", job
    pods = pods_of(job)
    logs = {n: plane.run("logs", "hpo1", "-p", "team-a", "--pod", n).stdout for n in pods}
    assert job["job"]["succeeded"] == 6 and job["job"]["failed"] == 0, \
        json.dumps((job["pods"], logs), indent=1)
    assert pods[preempted]["status"] == "Preempted"
    index = preempted.split("-")[1]
    assert f"hpo1-{index}-1" in pods
    resumed = [n for n, text in logs.items() if "Picked preempted HPO experiment #" in text]
    assert len(resumed) == 1, logs
    assert "Resuming from checkpoint" in logs[resumed[0]]
    assert "Using HPO directory /nfs/hpo" in logs[preempted]
    results = hpo.results(nfs / f"hpo1-{uid}")
    assert len(results) == 6 and all(t.status == "finished" for t in results)
    assert len({tuple(sorted(t.config.items())) for t in results}) == 6
    assert sorted(t.attempts for t in results)[-1] == 2
    assert not any("still alive" in text for text in logs.values())

    plane.run("delete", "hpo1", "-p", "team-a")
    train = finished(plane, "train", "team-b")
    assert train["job"]["status"] == "Succeeded"
    assert containers(uid) == [] and containers(train["job"]["uid"]) == []


def test_a_pod_in_an_image_has_its_environment_working_dir_and_exit_code(
        cplane: ControlPlane, image: str, tmp_path: Path) -> None:
    plane = cplane
    plane.run("project", "create", "p", "--gpus", "2")
    script = ('echo "pod $PODSWEEP_POD_NAME index $PODSWEEP_POD_INDEX/$JOB_COMPLETION_INDEX '
              'job $PODSWEEP_JOB_NAME project $PODSWEEP_PROJECT gpus $CUDA_VISIBLE_DEVICES '
              'threads $OMP_NUM_THREADS extra $EXTRA cwd $(pwd) path $PATH"; '
              'cat /data/in.txt; exit 3')
    data = tmp_path / "data"         # not tmp_path itself, which holds the plane's home
    data.mkdir()
    (data / "in.txt").write_text("from the host\n")
    plane.run("submit", "env", "-p", "p", "-i", image, "-g", "1", "--cpu", "2",
              "-e", "EXTRA=yes", "--working-dir", "/tmp", "-v", f"{data}:/data:ro",
              "--backoff-limit", "0", "--", "sh", "-c", script)
    job = finished(plane, "env", "p")
    assert job["job"]["status"] == "Failed"
    [pod] = job["pods"]
    assert pod["exit_code"] == 3 and pod["reason"] == "exit code 3"
    log = plane.run("logs", "env", "-p", "p", "--pod", "env-0-0").stdout
    # PATH is the image's own, not the control plane's
    assert log == (f"pod env-0-0 index 0/0 job env project p gpus {pod['gpus'][0]} threads 2 "
                   f"extra yes cwd /tmp path /usr/local/bin:/usr/bin:/bin\n"
                   f"from the host\n"), log
    assert containers(job["job"]["uid"]) == []
    # the variables went in through a file only the control plane's user reads (no value on
    # a command line; tests/runtime/test_container.py: none in the host's processes either)
    env_file = plane.home / "pods" / job["job"]["uid"] / "env-0-0.env"
    assert env_file.stat().st_mode & 0o777 == 0o600 and "EXTRA=yes\n" in env_file.read_text()


def test_an_image_pods_volume_may_not_hold_the_control_planes_home(
        cplane: ControlPlane, image: str, tmp_path: Path) -> None:
    """podman mounts an image pod's volumes as they are (no sandbox hides the home inside
    them), so a volume that holds the control plane's home is refused in one line, a link
    to it too, and nothing is stored."""
    plane = cplane
    plane.run("project", "create", "p", "--gpus", "1")
    link = tmp_path / "link"
    link.symlink_to(plane.home.parent)
    for source in ("/", str(plane.home.parent), str(link)):
        refused = plane.run("submit", "peek", "-p", "p", "-i", image, "-v", f"{source}:/host",
                            "--", "ls", "/host", check=False)
        assert refused.returncode == 2, refused
        assert refused.stderr.count("\n") == 1 and "pods may not see" in refused.stderr
    assert plane.json("list", "-p", "p") == []


def test_a_failed_pull_says_so_on_the_pod(cplane: ControlPlane, image: str) -> None:
    plane = cplane
    plane.run("project", "create", "p", "--gpus", "1")
    missing = "localhost/podsweep-no-such-image:1"
    plane.run("submit", "pull", "-p", "p", "-i", missing, "--backoff-limit", "0", "--",
              "true")
    job = finished(plane, "pull", "p")
    assert job["job"]["status"] == "Failed"
    [pod] = job["pods"]
    assert pod["reason"].startswith(f"ImagePullBackOff: cannot pull image {missing}: "), pod
    assert "\n" not in pod["reason"] and pod["exit_code"] == 125
    log = plane.run("logs", "pull", "-p", "p").stdout
    assert log.startswith(f"podsweep: pulling image {missing}\n"), log


def test_a_restarted_control_plane_adopts_container_pods_and_cleans_up_a_killed_one(
        cplane: ControlPlane, image: str, tmp_path: Path) -> None:
    """The control plane SIGKILLed and started again: a running container pod is adopted
    and `logs -f` follows it; a pod whose supervisor was SIGKILLed runs again, and its
    container is removed before the rerun starts."""
    plane = cplane
    plane.run("project", "create", "p", "--gpus", "2")
    go = tmp_path / "go"
    go.mkdir()
    plane.run("submit", "f", "-p", "p", "-i", image, "-v", f"{go}:/go", "--", "sh", "-c",
              "echo line 1; while [ ! -e /go/now ]; do sleep 0.1; done; echo line 2")
    plane.run("submit", "k", "-p", "p", "-i", image, "--", "sh", "-c",
              "echo up; sleep 300")
    uids = {n: plane.job(n, "p")["job"]["uid"] for n in ("f", "k")}
    plane.until("both running in containers", lambda: len(containers(uids["f"])) == 1
                and len(containers(uids["k"])) == 1 and "up" in plane.run(
                    "logs", "k", "-p", "p").stdout, timeout=60)

    os.kill(plane.server_pid(), signal.SIGKILL)
    plane.run("up")
    assert plane.job("f", "p")["job"]["running"] == 1
    follower = subprocess.Popen([PODSWEEP, "logs", "f", "-p", "p", "-f"],
                                stdout=subprocess.PIPE, text=True, env=plane.env)
    try:
        assert follower.stdout is not None
        assert follower.stdout.readline() == "line 1\n"
        (go / "now").touch()
        rest, _ = follower.communicate(timeout=60)
    finally:
        follower.kill()
    assert rest == "line 2\n" and follower.returncode == 0
    assert finished(plane, "f", "p")["job"]["status"] == "Succeeded"
    assert containers(uids["f"]) == []

    state = json.loads((plane.home / "pods" / uids["k"] / "k-0-0" / "state.json").read_text())
    os.kill(int(state["supervisor_pid"]), signal.SIGKILL)
    job = plane.until("k-0-0 lost and run again", lambda: (lambda j: j if "k-0-1" in pods_of(j)
                                                           else None)(plane.job("k", "p")))
    assert pods_of(job)["k-0-0"]["exit_code"] == -9
    plane.until("k-0-1 running", lambda: containers(uids["k"]) == [f"podsweep-{uids['k']}-k-0-1"],
                timeout=60)
    plane.run("delete", "k", "-p", "p")
    assert containers(uids["k"]) == []


def test_without_podman_a_submit_with_an_image_is_refused_in_one_line(tmp_path: Path) -> None:
    """A control plane on a machine without podman (a PATH without it) says what to
    install, and takes nothing."""
    cp = ControlPlane(tmp_path / "home")
    empty = tmp_path / "bin"
    empty.mkdir()
    cp.env["PATH"] = str(empty)
    try:
        cp.run("up", "--gpus", "1", "--no-isolation")
        cp.run("project", "create", "p", "--gpus", "1")
        refused = cp.run("submit", "x", "-p", "p", "-i", "python:3.11-slim", "--", "true",
                         check=False)
        assert refused.returncode == 7, refused.stderr
        assert refused.stderr.strip().splitlines() == [
            "error: -i python:3.11-slim: running pods in containers needs podman on this "
            "machine: apt-get install podman (or drop -i)"]
        assert cp.json("list", "-p", "p") == []
    finally:
        cp.stop()


def test_a_container_that_ignores_sigterm_is_killed_after_the_grace_period(
        cplane: ControlPlane, image: str) -> None:
    """delete: SIGTERM into the container, which ignores it; after the grace period the
    supervisor SIGKILLs the pod with its container, and the container is removed before
    delete returns."""
    plane = cplane
    plane.run("project", "create", "p", "--gpus", "1")
    plane.run("submit", "deaf", "-p", "p", "-i", image, "--grace-period", "1", "--", "sh",
              "-c", "trap 'echo ignoring SIGTERM' TERM; echo up; "
                    "while true; do sleep 0.2; done")
    uid = plane.job("deaf", "p")["job"]["uid"]
    log = plane.home / "pods" / uid / "deaf-0-0" / "pod.log"
    plane.until("deaf running", lambda: log.exists() and "up" in log.read_text(), timeout=60)
    plane.run("delete", "deaf", "-p", "p")
    assert containers(uid) == []
    assert "ignoring SIGTERM" in log.read_text()
    exit_file = json.loads((log.parent / "exit.json").read_text())
    assert exit_file["code"] == -signal.SIGKILL and exit_file["signalled"] is True
