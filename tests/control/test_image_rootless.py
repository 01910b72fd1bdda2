"""``submit -i IMAGE`` on a control plane run by a normal user: pods in rootless podman.

Run as root (as CI is), the test starts the control plane as :data:`~tests.containers.TEST_USER`
(scripts/test-user.sh makes it: a home, /etc/subuid and /etc/subgid ranges, a way to this
checkout's Python), with the environment of a login of its own (``XDG_RUNTIME_DIR=/run/user/UID``);
run by a normal user, as that user. Rootless podman keeps an image store per user: the test
image is imported into that user's. Where any of it is missing the test skips, saying what,
unless ``PODSWEEP_REQUIRE_PODMAN=1`` (.ci/run), which makes that a failure.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from ..containers import User, build_test_image, podman, rootless_user, unavailable
from .conftest import PODSWEEP, ControlPlane
from .test_image import finished


@pytest.fixture(scope="session")
def rootless(tmp_path_factory: pytest.TempPathFactory) -> tuple[User, str]:
    """The normal user, and the test image's tag in that user's own image store."""
    user = rootless_user()
    # the CLI from the user's side: a directory above the venv's Python may be closed to it
    tried = subprocess.run(user.argv(PODSWEEP, "--help"), capture_output=True, text=True,
                           env=ControlPlane(Path("/nonexistent"), user).env)
    if tried.returncode != 0:
        unavailable(f"user {user.name} cannot run {PODSWEEP} ({tried.stderr.strip()}): "
                    f"scripts/test-user.sh lets it through")
    return user, build_test_image(tmp_path_factory.mktemp("rootless-image"), user)


def containers(user: User, uid: str, *, every: bool = True) -> list[str]:
    """The containers of job ``uid`` in the user's podman: all it stores, or the running."""
    return user.podman("ps", *(["-a"] if every else []), "--format", "{{.Names}}",
                       "--filter", f"name=podsweep-{uid}-").stdout.split()


@pytest.fixture
def uplane(rootless: tuple[User, str]) -> Iterator[ControlPlane]:
    """A control plane run by the user, in a folder of the user's; afterwards, whatever
    container of its jobs a failed test left goes, and the folder with it."""
    user, _ = rootless
    # not in tmp_path: pytest's folders are root's alone (0700)
    top = Path(tempfile.mkdtemp(prefix="podsweep-rootless-"))
    os.chown(top, user.uid, user.gid)
    plane = ControlPlane(top / "home", user)
    try:
        plane.run("up", "--gpus", "2", "--cpus", "4")
        yield plane
    finally:
        plane.stop()
        pods = plane.home / "pods"
        for uid in os.listdir(pods) if pods.is_dir() else []:
            names = containers(user, uid)
            if names:
                user.podman("rm", "--force", "--time", "0", *names, check=False)
        shutil.rmtree(top, ignore_errors=True)


def test_a_normal_users_control_plane_runs_pods_in_its_own_rootless_podman(
        uplane: ControlPlane, rootless: tuple[User, str]) -> None:
    """Environment, exit code and logs as for root's pods; the containers are the user's
    (its podman lists them, root's does not, their processes run as the user); files written
    to a volume belong to the user (root in the container is the user on the host), or to
    the user's subordinate uids; delete's SIGTERM reaches the command; nothing left."""
    plane, (user, image) = uplane, rootless
    out = plane.home.parent / "out"
    out.mkdir()
    os.chown(out, user.uid, user.gid)
    plane.run("project", "create", "p", "--gpus", "2")
    script = ('echo "pod $PODSWEEP_POD_NAME project $PODSWEEP_PROJECT gpus '
              '$CUDA_VISIBLE_DEVICES extra $EXTRA runtime [$XDG_RUNTIME_DIR] home $HOME"; '
              'python3 -c \'import os; print("uid", os.getuid(), "volume owner", '
              'os.stat("/out").st_uid)\'; '
              'echo by root > /out/by-root; '
              'python3 -c \'import os; open("/out/by-1000", "w").close(); '
              'os.chown("/out/by-1000", 1000, 1000)\'; exit 3')
    plane.run("submit", "env", "-p", "p", "-i", image, "-g", "1", "-e", "EXTRA=yes",
              "-v", f"{out}:/out", "--backoff-limit", "0", "--", "sh", "-c", script)
    plane.run("submit", "term", "-p", "p", "-i", image, "--grace-period", "30", "--",
              "sh", "-c", "trap 'echo got SIGTERM; exit 0' TERM; echo up; "
                          "while true; do sleep 0.1; done")
    term = plane.job("term", "p")["job"]["uid"]
    log = plane.home / "pods" / term / "term-0-0" / "pod.log"
    plane.until("term running", lambda: log.exists() and "up" in log.read_text(), timeout=60)

    name = f"podsweep-{term}-term-0-0"
    assert containers(user, term, every=False) == [name]
    if user.other:
        engine = podman()
        assert engine is not None
        mine = subprocess.run([engine, "ps", "-a", "--format", "{{.Names}}"],
                              capture_output=True, text=True, check=True).stdout.split()
        assert name not in mine
    # the container's init: root in the container, the user on the host
    pid = user.podman("inspect", "--format", "{{.State.Pid}}", name).stdout.strip()
    status = Path(f"/proc/{pid}/status").read_text()
    uids = next(line.split()[1:] for line in status.splitlines() if line.startswith("Uid:"))
    assert uids == [str(user.uid)] * 4, status

    job = finished(plane, "env", "p")
    assert job["job"]["status"] == "Failed"
    [pod] = job["pods"]
    assert pod["exit_code"] == 3 and pod["reason"] == "exit code 3", pod
    text = plane.run("logs", "env", "-p", "p").stdout
    # the user's XDG_RUNTIME_DIR and HOME told podman where its state is; the container has
    # the image's own
    assert text == (f"pod env-0-0 project p gpus {pod['gpus'][0]} extra yes runtime [] "
                    f"home /root\nuid 0 volume owner 0\n"), text
    assert (out / "by-root").read_text() == "by root\n"
    assert (out / "by-root").stat().st_uid == user.uid
    assert (out / "by-root").stat().st_gid == user.gid
    # uid N > 0 in the container is the user's N-th subordinate uid on the host
    assert (out / "by-1000").stat().st_uid == user.first_subuid() + 999
    assert containers(user, job["job"]["uid"]) == []

    plane.run("delete", "term", "-p", "p")
    assert containers(user, term) == []
    assert log.read_text() == "up\ngot SIGTERM\n"
    # asked to end, and ended by the command's own exit 0 in its trap, not by a SIGKILL
    ended = json.loads((log.parent / "exit.json").read_text())
    assert ended["code"] == 0 and ended["signalled"] is True, ended
