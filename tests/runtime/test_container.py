"""A container pod's command line and environment, and its first step (containerpod.py)
run for real against podman with the tests' image (tests/containers.py)."""

from __future__ import annotations

import os
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from podsweep.errors import UsageError
from podsweep.model import JobSpec, Volume
from podsweep.runtime import container as ct

from ..containers import podman


def test_the_pods_own_variables_go_in_and_the_jobs_reach_nothing_on_the_host() -> None:
    base = {"PATH": "/usr/bin:/bin", "HOME": "/root", "LANG": "C.UTF-8"}
    job = {"HOME": "/home/job", "EXTRA": "yes", "LD_PRELOAD": "/nfs/evil.so",
           "PATH": "/opt/conda/bin", "XDG_RUNTIME_DIR": "/tmp/other"}
    env = {**base, **job, "PODSWEEP_POD_NAME": "j-0-0", "CUDA_VISIBLE_DEVICES": "2,3"}
    client, inside = ct.container_env(env, base, job, [2, 3], cdi=False,
                                      engine_env={"XDG_RUNTIME_DIR": "/run/user/1001",
                                                  "SECRET_KEY": "no"})
    # podman itself needs PATH, and rootless podman its runtime directory; nothing the job
    # set runs on the host (its LD_PRELOAD would run its code outside the container)
    assert client == {**base, "XDG_RUNTIME_DIR": "/run/user/1001"}
    assert inside == {**job, "PODSWEEP_POD_NAME": "j-0-0", "CUDA_VISIBLE_DEVICES": "2,3"}
    _, inside = ct.container_env(env, base, {}, [2, 3], cdi=True, engine_env={})
    assert inside["CUDA_VISIBLE_DEVICES"] == "0,1"      # the container sees its GPUs alone
    assert "PATH" not in inside                        # the image's own


def test_the_env_file_is_private_and_refuses_a_line_break(tmp_path: Path) -> None:
    path = tmp_path / "container.env"
    ct.write_env_file(path, {"A": "x=y z", "B": ""})
    assert path.read_text() == "A=x=y z\nB=\n"
    assert path.stat().st_mode & 0o777 == 0o600
    with pytest.raises(ValueError, match="line break"):
        ct.write_env_file(path, {"A": "one\nB=two"})


def test_the_create_command_line_holds_no_value(tmp_path: Path) -> None:
    c = ct.Container("/usr/bin/podman", "localhost/x:1", "podsweep-u1-j-0-0",
                     ["python3", "-c", "print(1)"], [Volume.parse("/srv:/nfs/hpo:ro")],
                     "/work", str(tmp_path / "container.env"), ["nvidia.com/gpu=GPU-1"])
    argv = ct.run_argv(c, tmp_path)
    assert argv[:3] == [sys.executable, "-I", ct.containerpod.__file__]
    mark, engine, image, name, sep = argv[3:8]
    assert (mark, engine, image, name, sep) == (str(tmp_path / ct.PULL_MARK), c.engine,
                                               c.image, c.name, "--")
    create = argv[8:]
    assert create[:2] == [c.engine, "create"] and "--init" in create
    assert create[-4:] == ["localhost/x:1", "python3", "-c", "print(1)"]
    pairs = list(zip(create, create[1:]))
    assert ("--env-file", str(tmp_path / "container.env")) in pairs and "-e" not in create
    assert ("-v", "/srv:/nfs/hpo:ro") in pairs and ("--workdir", "/work") in pairs
    assert ("--device", "nvidia.com/gpu=GPU-1") in pairs and ("--name", c.name) in pairs
    # no higher limit than the control plane's own, which podman could not set
    nofile = next(b for a, b in pairs if a == "--ulimit" and b.startswith("nofile="))
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    assert int(nofile.split("=")[1].split(":")[0]) <= soft


@pytest.mark.parametrize("bad", ["--privileged", "-v/:/host", "a b", "", "x\n"])
def test_what_is_not_an_image_name_is_refused(bad: str) -> None:
    with pytest.raises(UsageError, match="not an image reference"):
        JobSpec(name="j", project="p", command=["true"], image=bad)
    JobSpec(name="j", project="p", command=["true"],
            image="registry.example.com:5000/team/train:1.0@sha256:" + "a" * 64)


def _pod(image: str, tmp_path: Path, *command: str) -> tuple[subprocess.Popen[str], str]:
    engine = podman()
    assert engine is not None
    name = f"podsweep-test-{tmp_path.name[-20:].lower()}"
    argv = ct.run_argv(ct.Container(engine, image, name, list(command)), tmp_path)
    # as the supervisor starts a pod: a session and a process group of its own
    return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, start_new_session=True), name


def _left(name: str) -> list[str]:
    out = subprocess.run([str(podman()), "ps", "-a", "--format", "{{.Names}}", "--filter",
                          f"name={name}"], capture_output=True, text=True, check=True)
    return out.stdout.split()


def test_a_sigterm_reaches_the_command_in_its_container_and_nothing_is_left(
        image: str, tmp_path: Path) -> None:
    handler = ("import signal, sys, time\n"
               "def stop(*_):\n    print('got SIGTERM', flush=True); sys.exit(7)\n"
               "signal.signal(signal.SIGTERM, stop)\nprint('ready', flush=True)\n"
               "time.sleep(60)\n")
    proc, name = _pod(image, tmp_path, "python3", "-c", handler)
    assert proc.stdout is not None
    assert proc.stdout.readline() == "ready\n"
    assert _left(name) == [name]
    # to the pod's group, as the supervisor sends it
    os.killpg(proc.pid, signal.SIGTERM)
    rest, _ = proc.communicate(timeout=60)
    assert rest == "got SIGTERM\n" and proc.returncode == 7
    assert _left(name) == []


def test_a_sigterm_before_the_container_runs_ends_the_pod_as_killed(
        image: str, tmp_path: Path) -> None:
    """However early it comes, a SIGTERM leaves no container and no exit 0 (a podman
    client signalled while it creates a container exits 0 and leaves it behind)."""
    proc, name = _pod(image, tmp_path, "sh", "-c", "echo ran; exit 0")
    # once it has blocked SIGTERM (to take it when it is ready): from then on the signal
    # goes through its own steps, not the interpreter's default end
    def blocked() -> bool:
        with open(f"/proc/{proc.pid}/status") as f:
            mask = next(line for line in f if line.startswith("SigBlk:")).split()[1]
        return bool(int(mask, 16) & (1 << (signal.SIGTERM - 1)))
    while proc.poll() is None and not blocked():
        time.sleep(0.001)
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGTERM, out
    assert "ran" not in out and _left(name) == []
    assert not (tmp_path / ct.PULL_MARK).exists()


def test_a_sigterm_once_the_container_exists_stops_it_whether_or_not_it_runs_yet(
        image: str, tmp_path: Path) -> None:
    """Sent as soon as podman lists the container (created, starting or running): the pod
    ends stopped (killed before the start, or the command's own end on SIGTERM), never with
    0, and the container is gone."""
    proc, name = _pod(image, tmp_path, "sleep", "60")
    while proc.poll() is None and not _left(name):
        time.sleep(0.01)
    os.killpg(proc.pid, signal.SIGTERM)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode in (-signal.SIGTERM, 128 + signal.SIGTERM), out
    assert _left(name) == []


def test_a_helper_killed_by_sigkill_ends_as_killed_by_it() -> None:
    """A podman client SIGKILLed (the OOM killer) ends the pod as SIGKILLed, not with a
    traceback and exit 1: SIGKILL's disposition cannot be set."""
    code = subprocess.run(
        [sys.executable, "-c", "import signal; from podsweep.runtime import containerpod; "
         "containerpod._die_by(signal.SIGKILL)"], capture_output=True, timeout=30).returncode
    assert code == -signal.SIGKILL
