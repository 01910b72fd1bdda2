"""One suite of the behaviour every cluster shares, run on each cluster that can run here.

The same CLI commands, the same assertions, whatever runs the pods: the local cluster
always; Slurm where ``scontrol ping`` answers (``.ci/run`` starts one and sets
``PODSWEEP_REQUIRE_SLURM=1``, which turns its skip into a failure); Kubernetes where
``PODSWEEP_E2E_KUBECONFIG`` names a cluster with Kueue (pods there need an image:
``PODSWEEP_E2E_IMAGE``, default ``busybox:1.36``).

Engines are shared by every test (a Slurm's accounts, a Kubernetes' namespaces), so each
test names its projects afresh.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ..control.conftest import ControlPlane

ENGINES = ["local", "slurm", "kubernetes"]
REPO = Path(__file__).resolve().parents[2]


def slurm_ready() -> bool:
    if shutil.which("scontrol") is None:
        return False
    return subprocess.run(["scontrol", "ping"], capture_output=True, timeout=10).returncode == 0


def engine_args(engine: str) -> list[str]:
    """``podsweep up`` arguments for an engine, or a skip where it cannot run."""
    if engine == "local":
        return ["up", "--gpus", "4", "--cpus", "16"]
    if engine == "slurm":
        if not slurm_ready():
            if os.environ.get("PODSWEEP_REQUIRE_SLURM") == "1":
                pytest.fail("PODSWEEP_REQUIRE_SLURM=1 but no Slurm answers (scontrol ping)")
            pytest.skip("no Slurm here (scripts/slurm-up.sh starts one)")
        return ["up", "--cluster", "slurm"]
    kubeconfig = os.environ.get("PODSWEEP_E2E_KUBECONFIG")
    if not kubeconfig:
        pytest.skip("PODSWEEP_E2E_KUBECONFIG does not name a Kubernetes cluster with Kueue")
    return ["up", "--cluster", "kubernetes"]


class Engine:
    """A control plane on one engine, and what a job needs there to run ``sh``."""

    def __init__(self, engine: str, plane: ControlPlane) -> None:
        self.name = engine
        self.plane = plane
        self.image = (["-i", os.environ.get("PODSWEEP_E2E_IMAGE", "busybox:1.36")]
                      if engine == "kubernetes" else [])

    def project(self, gpus: int) -> str:
        name = f"c{uuid.uuid4().hex[:8]}"
        self.plane.run("project", "create", name, "--gpus", str(gpus))
        return name

    def submit(self, name: str, project: str, *args: str, script: str) -> None:
        self.plane.run("submit", name, "-p", project, *self.image, *args, "--",
                       "sh", "-c", script)

    def job(self, name: str, project: str) -> dict[str, Any]:
        return self.plane.job(name, project)

    def finished(self, name: str, project: str, timeout: float = 120,
                 every: float = 0.1) -> dict[str, Any]:
        def probe() -> dict[str, Any] | None:
            job = self.job(name, project)
            return job if job["job"]["status"] in ("Succeeded", "Failed") else None
        done: dict[str, Any] = self.plane.until(f"{name} finished", probe, timeout=timeout,
                                                every=every)
        return done


@pytest.fixture(params=ENGINES)
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    args = engine_args(request.param)
    plane = ControlPlane(tmp_path / "home")
    env = os.environ.get("PODSWEEP_E2E_KUBECONFIG")
    if request.param == "kubernetes" and env:
        plane.env["KUBECONFIG"] = env
    prefix = None
    if request.param == "slurm":
        # its own prefix for Slurm's accounts and QOS, removed afterwards
        from ..slurm.conftest import clean_slurm
        prefix = f"k{uuid.uuid4().hex[:6]}-"
        plane.home.mkdir(parents=True)
        (plane.home / "config.json").write_text(json.dumps({"slurm_prefix": prefix}))
    plane.run(*args)
    yield Engine(request.param, plane)
    plane.stop()
    if prefix is not None:
        clean_slurm(prefix)


def test_projects_and_quotas(engine: Engine) -> None:
    plane = engine.plane
    a = engine.project(2)
    b = engine.project(1)
    plane.run("project", "quota", b, "--gpus", "2")
    rows = {p["name"]: p for p in plane.json("project", "list")}
    assert rows[a]["deserved"] == 2 and rows[b]["deserved"] == 2
    assert rows[a]["allocated"] == 0 and rows[a]["running"] == 0
    bad = plane.run("project", "quota", b, "--gpus", "-1", check=False)
    assert bad.returncode != 0 and len(bad.stderr.strip().splitlines()) == 1
    assert {p["name"]: p for p in plane.json("project", "list")}[b]["deserved"] == 2
    again = plane.run("project", "create", a, "--gpus", "1", check=False)
    assert again.returncode != 0 and a in again.stderr


def test_submit_list_get_and_logs(engine: Engine) -> None:
    plane = engine.plane
    project = engine.project(4)
    engine.submit("conf", project, "-g", "1", "--parallelism", "2", "--completions", "3",
                  script='echo "pod $PODSWEEP_POD_NAME index $PODSWEEP_POD_INDEX '
                         'gpus $CUDA_VISIBLE_DEVICES"; echo second line')
    listed = plane.json("list", "-p", project)
    assert [j["name"] for j in listed] == ["conf"]
    assert listed[0]["parallelism"] == 2 and listed[0]["completions"] == 3
    job = engine.finished("conf", project)
    assert job["job"]["status"] == "Succeeded", job
    assert job["job"]["succeeded"] == 3 and job["job"]["failed"] == 0
    pods = {p["index"]: p for p in job["pods"] if p["status"] == "Succeeded"}
    assert sorted(pods) == [0, 1, 2]
    for index, pod in pods.items():
        assert pod["name"] == f"conf-{index}-{pod['attempt']}" and pod["exit_code"] == 0
        log = plane.run("logs", "conf", "-p", project, "--pod", pod["name"]).stdout
        assert log.splitlines()[0] == f"pod {pod['name']} index {index} gpus " + \
            ",".join(map(str, pod["gpus"]))
        assert len(pod["gpus"]) == 1
    first = pods[0]["name"]
    tail = plane.run("logs", "conf", "-p", project, "--pod", first, "--tail", "1").stdout
    assert tail == "second line\n"
    row = plane.run("list", "-p", project).stdout.splitlines()[1].split()
    assert row[:2] == ["conf", "Succeeded"] and row[3] == project


def test_bad_input_is_refused_and_changes_nothing(engine: Engine) -> None:
    plane = engine.plane
    project = engine.project(1)
    engine.submit("taken", project, script="true")
    cases = [
        ["submit", "taken", "-p", project, *engine.image, "--", "true"],     # name taken
        ["submit", "Bad_Name", "-p", project, *engine.image, "--", "true"],
        ["submit", "x", "-p", "no-such-project", *engine.image, "--", "true"],
        ["submit", "x", "-p", project, *engine.image, "-g", "99", "--", "true"],
        ["submit", "x", "-p", project, *engine.image, "--parallelism", "0", "--", "true"],
        ["logs", "taken", "-p", project, "--pod", "../../etc/passwd"],
        ["get", "nope", "-p", project],
    ]
    for args in cases:
        proc = plane.run(*args, check=False)
        assert proc.returncode != 0, args
        assert len(proc.stderr.strip().splitlines()) == 1, (args, proc.stderr)
    assert [j["name"] for j in plane.json("list", "-p", project)] == ["taken"]


def test_delete_stops_the_pods(engine: Engine) -> None:
    plane = engine.plane
    project = engine.project(2)
    engine.submit("long", project, "-g", "1", "--parallelism", "2", "--completions", "4",
                  script="echo started; sleep 300")
    plane.until("2 running", lambda: engine.job("long", project)["job"]["running"] == 2,
                timeout=120)
    plane.until("a log line", lambda: "started" in plane.run(
        "logs", "long", "-p", project, "--pod",
        engine.job("long", project)["pods"][0]["name"]).stdout, timeout=60)
    plane.run("delete", "long", "-p", project)
    assert plane.json("list", "-p", project) == []
    assert {p["name"]: p for p in plane.json("project", "list")}[project]["allocated"] == 0
    # the name is free again
    engine.submit("long", project, script="true")
    assert engine.finished("long", project)["job"]["status"] == "Succeeded"


def test_a_job_runs_where_it_was_submitted_from(engine: Engine, tmp_path: Path) -> None:
    """No --working-dir and a relative path, as a user types it: on an engine whose pods
    share this filesystem the pod runs in the directory of the submit; elsewhere the CLI
    says once that it does not."""
    plane = engine.plane
    project = engine.project(1)
    here = tmp_path / "submitted from here"
    here.mkdir()
    (here / "job.sh").write_text('pwd\necho "ran job.sh"\n')
    submitted = plane.run("submit", "wd", "-p", project, *engine.image, "--", "sh", "job.sh",
                          cwd=here, check=False)
    if engine.name == "kubernetes":
        assert submitted.stderr.count("working directory") == 1, submitted.stderr
        return
    assert submitted.returncode == 0, submitted.stderr
    assert "working directory" not in submitted.stderr
    job = engine.finished("wd", project)
    assert job["job"]["status"] == "Succeeded", job
    log = plane.run("logs", "wd", "-p", project, "--pod", job["pods"][-1]["name"]).stdout
    assert log == f"{here}\nran job.sh\n"


def test_the_readme_sweep_as_written(engine: Engine, tmp_path: Path) -> None:
    """The README's submit, word for word but for its paths: run from the repository's
    root with the example's relative path and no --working-dir, 12 pods, 3 at a time, the
    shared directory mounted at /nfs/hpo. Every configuration of the grid finishes once."""
    if engine.name == "kubernetes":
        pytest.skip("on Kubernetes the training script comes in an image (docs/kubernetes)")
    plane = engine.plane
    project = engine.project(2)
    nfs = tmp_path / "nfs"
    nfs.mkdir()
    plane.run("submit", "hpo1", "-p", project, "-g", "1", "--parallelism", "3",
              "--completions", "12", "-v", f"{nfs}:/nfs/hpo", "--",
              sys.executable, "examples/hpo_digits.py", cwd=REPO)
    job = engine.finished("hpo1", project, timeout=300, every=1.0)
    assert job["job"]["status"] == "Succeeded", job
    assert job["job"]["succeeded"] == 12
    experiment = nfs / f"hpo1-{job['job']['uid']}"
    trials = json.loads(plane.run("hpo", "show", str(experiment), "-o", "json").stdout)["trials"]
    assert len(trials) == 12 and all(t["status"] == "finished" for t in trials), trials
    configs = {(t["config"]["batch_size"], t["config"]["lr"]) for t in trials}
    assert len(configs) == 12


def test_a_user_joins_a_project_that_exists_and_not_one_that_does_not(engine: Engine) -> None:
    """Memberships name a project of the engine: on Kubernetes the store holds none."""
    plane = engine.plane
    project = engine.project(1)
    user = f"u{uuid.uuid4().hex[:8]}"
    plane.run("user", "create", user, "-p", project)
    assert {u["name"]: u["projects"] for u in plane.json("user", "list")}[user] == [project]
    missing = plane.run("user", "create", f"{user}x", "-p", f"{project}x", check=False)
    assert missing.returncode == 3
    assert missing.stderr.strip().splitlines() == [f"error: project '{project}x' not found"]
    assert f"{user}x" not in [u["name"] for u in plane.json("user", "list")]
