"""One suite of the behaviour every cluster shares, run on each cluster that can run here.

The same CLI commands, the same assertions, whatever runs the pods: the local cluster
always; Slurm where it answers (``.ci/run`` starts one and sets ``PODSWEEP_REQUIRE_SLURM=1``,
which turns its skip into a failure); Kubernetes on a real cluster with Kueue where
``PODSWEEP_E2E_KUBECONFIG`` names one (pods there need an image: ``PODSWEEP_E2E_IMAGE``,
default ``busybox:1.36``), else on a fake cluster: FakeApiServer
(tests/kubernetes/fake_apiserver.py) with FakeCluster (tests/kubernetes/fake_cluster.py)
playing Kueue, the job controller, the scheduler and a kubelet that runs each pod's command
as a process on this machine (the image ignored), so pods see this machine's files there.

What differs between engines is a few facts (:class:`Facts`), not branches in the tests.
Engines are shared by every test (a Slurm's accounts, a Kubernetes' namespaces), so each
test names its projects afresh.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import pytest

import podsweep.hpo as hpo

from ..control.conftest import PODSWEEP, ControlPlane
from ..slurm.conftest import SlurmPlane, clean_slurm, run, slurm_missing

ENGINES = ["local", "slurm", "kubernetes"]
REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "hpo_digits.py"
KUBECONFIG = os.environ.get("PODSWEEP_E2E_KUBECONFIG")
# the fake cluster's kubelet runs pods as process groups (POSIX)
FAKE_PODS = hasattr(os, "killpg")
NO_POD_RUNS = ("the fake Kubernetes cluster runs no pod on this system (it needs POSIX "
               "process groups): set PODSWEEP_E2E_KUBECONFIG to a real cluster")
FAKE_KUBELET = "fake-kubelet"       # beside the plane's home: the fake kubelet's pod logs

def paced(slow: float, fast: float) -> str:
    """``sh -c`` that runs its arguments with --epoch-seconds: ``slow`` for the first
    attempt of the first three pods (the one preempted is among them: its trial must still
    be going when team-b's job comes), ``fast`` for the rest of the sweep, reruns included,
    whose length is otherwise the test's. A first attempt is the one that makes its index's
    marker in the shared directory (mkdir is atomic): not every engine numbers attempts in
    the pod's environment (Kubernetes does not)."""
    return (f'case "$PODSWEEP_POD_INDEX" in [012]) mkdir "/nfs/hpo/.paced-$PODSWEEP_POD_INDEX" '
            f'2>/dev/null && s={slow} || s={fast} ;; *) s={fast} ;; esac; '
            f'exec "$0" "$@" --epoch-seconds "$s"')


class Records:
    """What an engine keeps of a job in its own records, beside podsweep's store, checked
    at the walk-through's turns. The local cluster keeps none beyond podsweep's."""

    def lent(self, plane: ControlPlane, name: str, project: str, lent: str) -> None:
        """Three pods run, ``lent`` on a GPU beyond the project's quota."""

    def preempted(self, plane: ControlPlane, name: str, project: str, index: str) -> None:
        """The job is done; the lent pod at ``index`` was preempted and ran again."""


class SlurmRecords(Records):
    def lent(self, plane: ControlPlane, name: str, project: str, lent: str) -> None:
        assert isinstance(plane, SlurmPlane)
        array = plane.array(name, project)
        running = [t for t in plane.squeue(array) if t["job_state"] == "RUNNING"]
        assert sorted(t["qos"] for t in running) == sorted(
            [f"ps-{plane.prefix}{project}"] * 2 + [f"ps_{plane.prefix}borrow"])
        # the lent task still counts towards the array's %3: the rest wait on it, not on
        # quota
        plane.until("the rest held by the array's throttle", lambda: {
            t["state_reason"] for t in plane.squeue(array) if t["job_state"] == "PENDING"} == {
            "JobArrayTaskLimit"})
        assert len([t for t in plane.squeue(array) if t["job_state"] == "RUNNING"]) == 3

    def preempted(self, plane: ControlPlane, name: str, project: str, index: str) -> None:
        # Slurm's own record: the borrowed task was preempted in the borrow QOS and ran again
        assert isinstance(plane, SlurmPlane)
        array = plane.array(name, project)
        records = run("sacct", "-D", "-X", "-P", "-n", "-j", f"{array}_{index}",
                      "--format=State,QOS").split()
        assert f"PREEMPTED|ps_{plane.prefix}borrow" in records, records
        assert records[-1].startswith("COMPLETED"), records


def started(job: dict[str, Any]) -> list[str]:
    """The Started events' messages, oldest first."""
    return [e["message"] for e in job["events"] if e["kind"] == "Started"]


def local_live(plane: ControlPlane, job: dict[str, Any]) -> list[Any]:
    return [p for p in plane.pod_pids() if p != plane.server_pid()]


def slurm_live(plane: ControlPlane, job: dict[str, Any]) -> list[Any]:
    assert isinstance(plane, SlurmPlane)
    array = next(e for e in job["events"] if e["kind"] == "Slurm")["message"].split()[2]
    return [t for t in plane.squeue(array)
            if t["job_state"] in ("RUNNING", "COMPLETING", "PENDING")]


def kubernetes_live(plane: ControlPlane, job: dict[str, Any]) -> list[Any]:
    from kubernetes import client, config

    api = client.CoreV1Api(config.new_client_from_config(
        config_file=plane.env["KUBECONFIG"]))
    pods = api.list_namespaced_pod(f"podsweep-{job['job']['project']}",
                                   label_selector=f"podsweep.io/job={job['job']['name']}")
    return [p.metadata.name for p in pods.items]


NO_HOST_FILES = ("pods on Kubernetes run in an image: they see neither this machine's files "
                 "nor its Python (docs/kubernetes)")


@dataclass(frozen=True)
class Facts:
    """How one engine differs where every engine keeps the same contract."""

    up: list[str]                   # ``podsweep up`` arguments
    image: list[str] = field(default_factory=list)     # what a job needs to run ``sh``
    no_pods: str | None = None      # why no pod runs here, or None
    no_image: str | None = None     # why no pod runs in an image here, or None
    host_files: bool = True         # pods see this machine's files and run its Python
    # pods start in the directory of the submit, and the submit checks host directories
    # (the engine's status says shared_filesystem); else they start in the image's
    shared_filesystem: bool = True
    names_gpus: bool = True         # a pod's detail says which GPUs it holds, as it sees them
    # a pod's name, as a regular expression: (job, index, attempt)
    pod_name: Callable[[str, int, int], str] = \
        lambda job, index, attempt: re.escape(f"{job}-{index}-{attempt}")
    # the file on this machine a pod's log is written to: (home, the job's detail, pod)
    log_file: Callable[[Path, dict[str, Any], str], Path] = \
        lambda home, job, pod: Path("/nonexistent")
    # the pod lent an idle GPU beyond its project's quota, from the job's detail
    lent: Callable[[dict[str, Any]], str] = lambda job: started(job)[-1].split()[1]
    records: Records = field(default_factory=Records)
    # what of the job still runs, in the engine's own view: (plane, the job's detail)
    live: Callable[[ControlPlane, dict[str, Any]], list[Any]] = local_live
    walk_args: list[str] = field(default_factory=list)     # the walk-through's submit
    # a reclaim preempts the borrowing job whole (Kueue evicts a Workload: all its pods,
    # which Kubernetes then deletes, and the job waits to be admitted again), not only the
    # pod over quota; the job's event that says so
    reclaims_job: bool = False
    preemption: str = "Preempted"
    # slow and fast epoch, epochs: 0.8 s epochs for the first three pods, since the lent
    # one must still be mid-trial when team-b's job comes (0.4 s lost that race on a
    # loaded machine: another pod was preempted, the lent one having ended)
    walk_pace: tuple[float, float, int] = (0.8, 0.1, 8)
    # a submit whose image does not fit the engine, and what the refusal says
    # (local: any image runs, through podman, tests/control/test_image.py; one that is not
    # an image's name is refused)
    wrong_image: tuple[list[str], str] = (["-i", "--privileged"], "not an image reference")
    too_many_gpus: str = "has 4 GPU(s)"
    # shared tests this engine fails today: test -> why (strict xfail: a fix must say so)
    fails: dict[str, str] = field(default_factory=dict)

    def run_in(self, directory: Path) -> list[str]:
        """What a submit needs for its pods to start in ``directory`` of this machine."""
        return [] if self.shared_filesystem else ["--working-dir", str(directory)]

    def lacks(self, need: str) -> str | None:
        """Why a test that needs ``need`` cannot run here, or None."""
        if need == "image":
            return self.no_image
        if need == "shared filesystem" and not self.shared_filesystem:
            return "hostPath directories are the nodes', not this machine's: the submit " \
                   "cannot check them"
        if self.no_pods:
            return self.no_pods
        return NO_HOST_FILES if need == "host files" and not self.host_files else None


FACTS = {
    "local": Facts(
        up=["up", "--gpus", "4", "--cpus", "16"],       # docs/local.md: CPUs are scheduled
        # pods in images run through podman (tests/control/test_image.py)
        no_image=None if shutil.which("podman") else "podman is not installed",
        log_file=lambda home, job, pod: home / "pods" / job["job"]["uid"] / pod / "pod.log",
        # team-b's job preempts the newest pod: the third, lent an idle GPU
        walk_args=["--grace-period", "20"]),
    "slurm": Facts(
        up=["up", "--cluster", "slurm"],
        no_image="Slurm here has neither pyxis nor Apptainer: -i is refused",
        log_file=lambda home, job, pod: home / "slurm" / job["job"]["uid"] / f"{pod}.log",
        lent=lambda job: next(m.split()[1] for m in started(job) if "borrowed" in m),
        records=SlurmRecords(), live=slurm_live,
        # 1 s epochs for the first three tasks: team-b's job must reach Slurm while the
        # lent task is still mid-trial, through a few more CLI round trips than on local;
        # Slurm's grace period is its KillWait, not --grace-period
        walk_pace=(1.0, 0.2, 10),
        wrong_image=(["-i", "python:3.11"], "drop -i"),
        too_many_gpus="no Slurm node has more than 4 GPU(s)"),
    "kubernetes": Facts(
        up=["up", "--cluster", "kubernetes"],
        image=["-i", os.environ.get("PODSWEEP_E2E_IMAGE", "busybox:1.36")],
        no_pods=None if KUBECONFIG or FAKE_PODS else NO_POD_RUNS,
        # the fake cluster's kubelet runs pods here; a real cluster's nodes are elsewhere
        host_files=not KUBECONFIG, shared_filesystem=False,
        # the device plugin picks a pod's GPUs on its node; the API does not say which
        names_gpus=False,
        pod_name=lambda job, index, attempt: re.escape(f"{job}-{index}-") + "[a-z0-9]{5}",
        log_file=lambda home, job, pod: (home.parent / FAKE_KUBELET /
                                         f"podsweep-{job['job']['project']}" / f"{pod}.log"),
        live=kubernetes_live,
        reclaims_job=True, preemption="Kueue Preempted",
        wrong_image=([], "pass -i IMAGE"),
        too_many_gpus="no Kubernetes node has more than 4 GPU(s)"),
}


# What a test needs of its engine; checked before the engine starts (an engine started only
# to skip costs 1 to 3 s a test).
PODS = pytest.mark.needs("pods")                # pods that run
HOST = pytest.mark.needs("host files")          # pods that run here, in this machine's files
SHARED = pytest.mark.needs("shared filesystem")     # the submit sees the pods' directories
IMAGE = pytest.mark.needs("image")              # pods that run in an image, elsewhere


class Engine:
    """A control plane on one engine, and the engine's facts."""

    def __init__(self, engine: str, plane: ControlPlane) -> None:
        self.name = engine
        self.plane = plane
        self.facts = FACTS[engine]
        self.image = self.facts.image

    def project(self, gpus: int) -> str:
        name = f"c{uuid.uuid4().hex[:8]}"
        self.plane.run("project", "create", name, "--gpus", str(gpus))
        return name

    def submit(self, name: str, project: str, *args: str, script: str,
               token: str | None = None) -> None:
        self.plane.run("submit", name, "-p", project, *self.image, *args, "--",
                       "sh", "-c", script, token=token)

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


def kubernetes_plane(plane: ControlPlane, tmp_path: Path) -> Iterator[None]:
    """A real cluster where one is named, else FakeApiServer with one node of 4 GPUs."""
    pytest.importorskip("kubernetes")
    if KUBECONFIG:
        plane.env["KUBECONFIG"] = KUBECONFIG
        yield
        return
    from ..kubernetes.fake_apiserver import FakeApiServer
    from ..kubernetes.fake_cluster import FakeCluster

    # pods go once their processes have ended, not on a timer; a failed pod's index runs
    # again after 1 s, not Kubernetes' 10 s, to keep the suite short
    with FakeApiServer(termination_delay=None) as fake, \
            FakeCluster(fake, tmp_path / FAKE_KUBELET, backoff=1.0):
        fake.add_node("gpu-node", 4)
        plane.env["KUBECONFIG"] = str(fake.kubeconfig(tmp_path / "kubeconfig"))
        yield


@pytest.fixture(params=ENGINES)
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    home = tmp_path / "home"
    for mark in request.node.iter_markers("needs"):
        why = FACTS[request.param].lacks(mark.args[0])
        if why:
            pytest.skip(why)
    failing = FACTS[request.param].fails.get(request.function.__name__)
    if failing:
        request.applymarker(pytest.mark.xfail(strict=True, reason=failing))
    if request.param == "slurm":
        why = slurm_missing()
        if why is not None:
            if os.environ.get("PODSWEEP_REQUIRE_SLURM") == "1":
                pytest.fail(f"PODSWEEP_REQUIRE_SLURM=1 but {why}")
            pytest.skip(f"{why} (scripts/slurm-up.sh starts one)")
        # its own prefix for Slurm's accounts and QOS, removed afterwards
        prefix = f"k{uuid.uuid4().hex[:6]}-"
        home.mkdir(parents=True)
        (home / "config.json").write_text(json.dumps({"slurm_prefix": prefix}))
        slurm = SlurmPlane(home, prefix)
        slurm.run(*FACTS["slurm"].up)
        try:
            yield Engine("slurm", slurm)
        finally:
            slurm.stop()
            clean_slurm(prefix)
        return
    plane = ControlPlane(home)
    around = kubernetes_plane(plane, tmp_path) if request.param == "kubernetes" \
        else iter([None])
    next(around)
    try:
        plane.run(*FACTS[request.param].up)
        yield Engine(request.param, plane)
    finally:
        plane.stop()
        next(around, None)


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


def test_the_project_table_and_the_default_project(engine: Engine) -> None:
    plane = engine.plane
    a = engine.project(2)
    b = engine.project(2)
    plane.run("project", "quota", b, "--gpus", "3")
    rows = {p["name"]: p for p in plane.json("project", "list")}
    assert rows[a]["deserved"] == 2 and rows[b]["deserved"] == 3
    table = plane.run("project", "list").stdout.splitlines()
    assert table[0].split()[:4] == ["PROJECT", "DESERVED", "GPUS", "ALLOCATED"]
    assert f"{a} has been set" in plane.run("project", "set", a).stdout
    assert json.loads((plane.home / "cli.json").read_text())["project"] == a


@PODS
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
        assert re.fullmatch(engine.facts.pod_name("conf", index, pod["attempt"]), pod["name"])
        assert pod["exit_code"] == 0
        log = plane.run("logs", "conf", "-p", project, "--pod", pod["name"]).stdout
        assert log.splitlines()[0] == f"pod {pod['name']} index {index} gpus " + \
            ",".join(map(str, pod["gpus"]))
        assert len(pod["gpus"]) == (1 if engine.facts.names_gpus else 0)
    first = pods[0]["name"]
    tail = plane.run("logs", "conf", "-p", project, "--pod", first, "--tail", "1").stdout
    assert tail == "second line\n"
    row = plane.run("list", "-p", project).stdout.splitlines()[1].split()
    assert row[:2] == ["conf", "Succeeded"] and row[3] == project


@HOST
def test_pods_run_with_their_environment_gpus_and_logs(engine: Engine, tmp_path: Path):
    plane = engine.plane
    project = engine.project(4)
    out = tmp_path / "out"
    out.mkdir()
    script = (f'echo "pod $PODSWEEP_POD_NAME index $PODSWEEP_POD_INDEX/$JOB_COMPLETION_INDEX '
              f'gpus $CUDA_VISIBLE_DEVICES threads $OMP_NUM_THREADS job $PODSWEEP_JOB_NAME '
              f'project $PODSWEEP_PROJECT extra $EXTRA cwd $(pwd)"; '
              f'echo "$(date +%s.%N) start $CUDA_VISIBLE_DEVICES" >> {out}/$PODSWEEP_POD_INDEX; '
              f'sleep 0.4; echo "$(date +%s.%N) end $CUDA_VISIBLE_DEVICES" >> '
              f'{out}/$PODSWEEP_POD_INDEX')
    plane.run("submit", "j1", "-p", project, *engine.image, "-g", "1", "--parallelism", "3",
              "--completions", "6", "--cpu", "2", "-e", "EXTRA=yes", "--working-dir",
              str(tmp_path), "--", "sh", "-c", script)
    job = engine.finished("j1", project)
    assert job["job"]["status"] == "Succeeded" and job["job"]["succeeded"] == 6
    assert sorted(p["index"] for p in job["pods"]) == list(range(6))
    fourth = next(p for p in job["pods"] if p["index"] == 4)
    log = plane.run("logs", "j1", "-p", project, "--pod", fourth["name"]).stdout
    assert (f"pod {fourth['name']} index 4/4 gpus {','.join(map(str, fourth['gpus']))} "
            f"threads 2 job j1 project {project} extra yes cwd {tmp_path}") in log
    # at most 3 at once, and (where the engine names them) never one GPU in two running
    # pods at the same time
    spans = []
    for i in range(6):
        (t0, _, g0), (t1, _, _) = [line.split(" ", 2) for line in (out / str(i)).read_text()
                                   .splitlines()]
        spans.append((float(t0), float(t1), g0))
    for t, _, _ in spans:
        assert sum(1 for a, b, _ in spans if a <= t < b) <= 3
    for i, (a, b, g) in enumerate(spans):
        for j, (c, d, h) in enumerate(spans):
            if i != j and g == h and engine.facts.names_gpus:
                assert b <= c or d <= a, f"GPU {g} held twice"
    table = plane.run("get", "j1", "-p", project).stdout
    assert "Parallelism:" in table and "POD" in table and "EVENTS" in table
    listing = plane.run("list", "-p", project).stdout.splitlines()
    assert listing[1].split()[:2] == ["j1", "Succeeded"] and "6/6" in listing[1]


@PODS
def test_a_failing_pod_is_retried_up_to_the_backoff_limit(engine: Engine):
    project = engine.project(1)
    # a limit of 1, not more: each retry on Slurm is a requeue, about 10 s here
    engine.submit("bad", project, "--backoff-limit", "1", script="echo trying; exit 3")
    job = engine.finished("bad", project)
    assert job["job"]["status"] == "Failed" and job["job"]["failed"] == 2
    assert [p["exit_code"] for p in job["pods"]] == [3, 3]
    names = [p["name"] for p in job["pods"]]
    assert [(p["index"], p["attempt"]) for p in job["pods"]] == [(0, 0), (0, 1)]
    for attempt, name in enumerate(names):
        assert re.fullmatch(engine.facts.pod_name("bad", 0, attempt), name), names
    assert "backoff limit 1" in job["job"]["message"]
    # the job's events: each attempt started and failed, in order
    assert [m.split()[1] for m in started(job)] == names
    failed = [e["message"].split()[1].rstrip(":") for e in job["events"]
              if e["kind"] == "Failed" and e["message"].startswith("pod ")]
    assert failed == names, job["events"]
    assert job["events"][-1]["kind"] == "Failed" and "backoff limit 1" in \
        job["events"][-1]["message"]
    assert "trying" in engine.plane.run("logs", "bad", "-p", project, "--pod",
                                        names[1]).stdout


def test_bad_input_is_refused_and_changes_nothing(engine: Engine) -> None:
    plane = engine.plane
    project = engine.project(1)
    engine.submit("taken", project, script="true")
    image = engine.image
    wrong_image, refused_image = engine.facts.wrong_image
    cases = [
        (["submit", "taken", "-p", project, *image, "--", "true"], "already exists"),
        (["submit", "Bad_Name", "-p", project, *image, "--", "true"], "invalid job name"),
        (["submit", "x", "-p", "no-such-project", *image, "--", "true"],
         "project 'no-such-project' not found"),
        (["submit", "x", "-p", project, *image, "-g", "-1", "--", "true"], "--gpu"),
        (["submit", "x", "-p", project, *image, "--parallelism", "0", "--", "true"],
         "parallelism"),
        (["submit", "x", "-p", project, *image, "--completions", "0", "--", "true"],
         "completions"),
        (["submit", "x", "-p", project, *image, "-v", "relative:/x", "--", "true"],
         "absolute"),
        (["submit", "x", "-p", project, *image, "-v", "/tmp", "--", "true"], "SRC:DST"),
        (["submit", "x", "-p", project, *image], "missing command"),
        (["submit", "x", "-p", project, *wrong_image, "--", "true"], refused_image),
        (["submit", "x", "-p", project, *image, "-e", "NOEQUALS", "--", "true"],
         "KEY=VALUE"),
        (["logs", "taken", "-p", project, "--pod", "../../etc/passwd"], "not a pod of job"),
        (["logs", "taken", "-p", project, "--pod", "other-0-0"], "not a pod of job"),
        (["get", "nope", "-p", project], "not found"),
        (["project", "create", "Team_A"], "invalid project name"),
        (["project", "create", "team-x", "--gpus", "-1"], "--gpus"),
        (["project", "create", project], "already exists"),
        (["project", "quota", "nope", "--gpus", "1"], "not found"),
    ]
    projects = [p["name"] for p in plane.json("project", "list")]
    for args, message in cases:
        proc = plane.run(*args, check=False)
        assert proc.returncode != 0, args
        assert message in proc.stderr, (args, proc.stderr)
        assert len(proc.stderr.strip().splitlines()) == 1, (args, proc.stderr)
    assert [j["name"] for j in plane.json("list", "-p", project)] == ["taken"]
    assert [p["name"] for p in plane.json("project", "list")] == projects


def test_more_gpus_than_the_engine_has_are_refused(engine: Engine) -> None:
    plane = engine.plane
    project = engine.project(1)
    for gpus, message in (("99", ""), ("5", engine.facts.too_many_gpus)):
        proc = plane.run("submit", "x", "-p", project, *engine.image, "-g", gpus, "--",
                         "true", check=False)
        assert proc.returncode != 0 and message in proc.stderr, (gpus, proc.stderr)
        assert len(proc.stderr.strip().splitlines()) == 1, (gpus, proc.stderr)
    assert plane.json("list", "-p", project) == []


@SHARED
def test_a_volume_that_does_not_exist_is_refused(engine: Engine) -> None:
    """A host directory is checked where the pods share this machine's files."""
    plane = engine.plane
    project = engine.project(1)
    proc = plane.run("submit", "x", "-p", project, "-v", "/no/such/dir:/x", "--", "true",
                     check=False)
    assert proc.returncode != 0 and "does not exist" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert plane.json("list", "-p", project) == []


def test_users_see_and_touch_only_their_projects(engine: Engine) -> None:
    plane = engine.plane
    a = engine.project(1)
    b = engine.project(1)
    user = f"u{uuid.uuid4().hex[:8]}"
    out = plane.run("user", "create", user, "-p", a).stdout
    token = out.split("CLI token: ")[1].split()[0]
    engine.submit("b1", b, script="true")
    engine.submit("a1", a, script="true", token=token)
    assert [j["name"] for j in plane.json("list", "-A", token=token)] == ["a1"]
    assert [p["name"] for p in plane.json("project", "list", token=token)] == [a]
    for args in (["get", "b1", "-p", b], ["delete", "b1", "-p", b],
                 ["submit", "x", "-p", b, *engine.image, "--", "true"],
                 ["project", "create", f"{b}c"], ["user", "create", f"{user}b"]):
        refused = plane.run(*args, token=token, check=False)
        assert refused.returncode == 4, (args, refused.stderr)
        assert refused.stderr.startswith("error: ") and len(refused.stderr.splitlines()) == 1
    wrong = plane.run("list", "-A", token="not-a-token", check=False)
    assert wrong.returncode == 4 and "invalid token" in wrong.stderr
    assert sorted(j["name"] for j in plane.json("list", "-A")) == ["a1", "b1"]


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


def test_down_then_up_keeps_state(engine: Engine) -> None:
    plane = engine.plane
    project = engine.project(2)
    pid = plane.server_pid()
    assert "stopped" in plane.run("down").stdout
    assert plane.run("status", check=False).returncode == 1
    listing = plane.run("list", check=False)
    assert listing.returncode == 5 and "not running" in listing.stderr
    plane.run("up")
    assert plane.server_pid() != pid
    assert project in [p["name"] for p in plane.json("project", "list")]


@PODS
def test_delete_stops_the_pods(engine: Engine) -> None:
    """Delete returns once no pod of the job runs, in the engine's own view."""
    plane = engine.plane
    project = engine.project(2)
    engine.submit("long", project, "-g", "1", "--parallelism", "2", "--completions", "4",
                  script="echo started; sleep 300 & sleep 300")
    job = plane.until("2 running", lambda: (lambda j: j if j["job"]["running"] == 2
                                            else None)(engine.job("long", project)),
                      timeout=120)
    running = sorted(p["name"] for p in job["pods"] if p["status"] == "Running")
    assert engine.facts.live(plane, job)
    # status says which pod holds each GPU
    assert sorted(g["pod"] for g in plane.json("status")["gpus"] if g["pod"]) == running
    plane.until("a log line", lambda: "started" in plane.run(
        "logs", "long", "-p", project, "--pod", running[0]).stdout, timeout=60)
    deleted = plane.run("delete", "long", "-p", project)
    assert "Stopping 2 pod(s) of long (SIGTERM, then SIGKILL after 30 s)" in deleted.stderr
    assert "deleted" in deleted.stdout
    assert engine.facts.live(plane, job) == []
    assert plane.json("list", "-p", project) == []
    assert {p["name"]: p for p in plane.json("project", "list")}[project]["allocated"] == 0
    # the name is free again
    engine.submit("long", project, script="true")
    assert engine.finished("long", project)["job"]["status"] == "Succeeded"


@HOST
def test_logs_follow_a_running_pod(engine: Engine, tmp_path: Path) -> None:
    """``logs -f`` gives a line while the pod still runs, not only once it has ended (the
    pod waits for a file that the test makes after reading the first line), and returns
    when the pod ends."""
    plane = engine.plane
    project = engine.project(1)
    go = tmp_path / "go"
    engine.submit("f", project, script=f"echo line 1; while [ ! -e {go} ]; do sleep 0.1; "
                                        f"done; echo line 2; echo line 3")
    plane.until("f running", lambda: engine.job("f", project)["job"]["running"], timeout=120)
    follower = subprocess.Popen([PODSWEEP, "logs", "f", "-p", project, "-f"],
                                stdout=subprocess.PIPE, text=True, env=plane.env)
    try:
        assert follower.stdout is not None
        assert follower.stdout.readline() == "line 1\n"
        assert engine.job("f", project)["job"]["running"] == 1
        go.touch()
        rest, _ = follower.communicate(timeout=120)
    finally:
        follower.kill()
    assert rest == "line 2\nline 3\n" and follower.returncode == 0
    assert plane.run("logs", "f", "-p", project, "--tail", "1").stdout == "line 3\n"


@HOST
def test_volumes_are_mounted_where_the_pod_expects_them(engine: Engine, tmp_path: Path):
    plane = engine.plane
    shared = tmp_path / "shared"
    shared.mkdir()
    (shared / "data.txt").write_text("from the host\n")
    project = engine.project(1)
    plane.run("submit", "v", "-p", project, *engine.image, "-v", f"{shared}:/nfs/hpo", "--",
              "sh", "-c",
              "cat /nfs/hpo/data.txt && echo written > /nfs/hpo/out.txt")
    job = engine.finished("v", project)
    assert job["job"]["status"] == "Succeeded", plane.run("logs", "v", "-p", project).stdout
    assert "from the host" in plane.run("logs", "v", "-p", project).stdout
    assert (shared / "out.txt").read_text() == "written\n"
    assert not Path("/nfs").exists()


@HOST
def test_a_job_runs_where_it_was_submitted_from(engine: Engine, tmp_path: Path) -> None:
    """No --working-dir and a relative path, as a user types it: on an engine whose pods
    share this filesystem the pod runs in the directory of the submit; elsewhere the CLI
    says once that it does not (the next test), and --working-dir names it."""
    plane = engine.plane
    project = engine.project(1)
    here = tmp_path / "submitted from here"
    here.mkdir()
    (here / "job.sh").write_text('pwd\necho "ran job.sh"\n')
    submitted = plane.run("submit", "wd", "-p", project, *engine.image,
                          *engine.facts.run_in(here), "--", "sh", "job.sh", cwd=here,
                          check=False)
    assert submitted.returncode == 0, submitted.stderr
    assert "working directory" not in submitted.stderr
    job = engine.finished("wd", project)
    assert job["job"]["status"] == "Succeeded", job
    log = plane.run("logs", "wd", "-p", project, "--pod", job["pods"][-1]["name"]).stdout
    assert log == f"{here}\nran job.sh\n"


@IMAGE
def test_a_submit_says_once_where_its_pods_will_not_run(engine: Engine, tmp_path: Path):
    """Where pods run in an image, not in the directory of the submit, the CLI says so in
    one line, and the job is taken."""
    plane = engine.plane
    project = engine.project(1)
    # any image will do: the job is only taken, and its pods need not run
    image = engine.image or ["-i", "localhost/podsweep-conformance:absent"]
    submitted = plane.run("submit", "wd", "-p", project, *image, "--", "sh", "job.sh",
                          cwd=tmp_path)
    assert submitted.stderr.count("working directory") == 1, submitted.stderr
    assert plane.job("wd", project)["spec"]["working_dir"] is None


@HOST
def test_the_readme_sweep_as_written(engine: Engine, tmp_path: Path) -> None:
    """The README's submit, word for word but for its paths: run from the repository's
    root with the example's relative path and no --working-dir, 12 pods, 3 at a time, the
    shared directory mounted at /nfs/hpo. Every configuration of the grid finishes once."""
    plane = engine.plane
    project = engine.project(2)
    nfs = tmp_path / "nfs"
    nfs.mkdir()
    plane.run("submit", "hpo1", "-p", project, *engine.image, *engine.facts.run_in(REPO),
              "-g", "1", "--parallelism", "3", "--completions", "12",
              "-v", f"{nfs}:/nfs/hpo", "--", sys.executable, "examples/hpo_digits.py",
              cwd=REPO)
    job = engine.finished("hpo1", project, timeout=300, every=1.0)
    assert job["job"]["status"] == "Succeeded", job
    assert job["job"]["succeeded"] == 12
    experiment = nfs / f"hpo1-{job['job']['uid']}"
    trials = json.loads(plane.run("hpo", "show", str(experiment), "-o", "json").stdout)["trials"]
    assert len(trials) == 12 and all(t["status"] == "finished" for t in trials), trials
    configs = {(t["config"]["batch_size"], t["config"]["lr"]) for t in trials}
    assert len(configs) == 12


@HOST
def test_the_walkthrough(engine: Engine, tmp_path: Path) -> None:
    """The walk-through, end to end, with the real training script.

    4 GPUs; team-a and team-b deserve 2 each. hpo1 (team-a): 12 pods of
    examples/hpo_digits.py, 3 at a time, one GPU each, the shared directory at /nfs/hpo. Two
    run within team-a's quota and the engine lends the third an idle GPU. Then team-b claims
    its 2 GPUs: the lent pod is preempted (on Kubernetes, hpo1 whole: Kueue evicts
    workloads) and its index runs again as the next attempt; its trial is handed out again
    and resumes from its checkpoint, and all 12 configurations complete.
    """
    plane = engine.plane
    facts = engine.facts
    slow, fast, epochs = facts.walk_pace
    nfs = tmp_path / "nfs"
    nfs.mkdir()
    team_a = engine.project(2)
    team_b = engine.project(2)      # the default CPU quota, 0, on every engine
    plane.run("project", "set", team_a)
    plane.run("submit", "hpo1", *engine.image, "-g", "1", "--parallelism", "3",
              "--completions", "12", "-v", f"{nfs}:/nfs/hpo", *facts.walk_args, "--", "sh", "-c",
              paced(slow=slow, fast=fast), sys.executable, str(EXAMPLE), "--epochs",
              str(epochs))

    # 3 pods run: one of them over team-a's quota, on an idle GPU lent to it
    job = plane.until("3 hpo1 pods running", lambda: (lambda j: j if j["job"]["running"] == 3
                                                      else None)(plane.job("hpo1", team_a)))
    row = plane.run("list").stdout.splitlines()[1].split()
    assert row[:2] == ["hpo1", "Running"] and "3 (3)" in " ".join(row)
    rows = {p["name"]: p for p in plane.json("project", "list")}
    assert rows[team_a]["allocated"] == 3 and rows[team_a]["deserved"] == 2
    lent = facts.lent(job)
    facts.records.lent(plane, "hpo1", team_a, lent)

    # team-b needs its 2 GPUs: the lent pod is preempted
    # read from the log file itself, not through a CLI call per probe: on a loaded machine
    # each call takes a second or more of the lent pod's few seconds left mid-trial (CI once
    # saw the pod finish first, and then nothing was left to preempt)
    log_file = facts.log_file(plane.home, job, lent)
    plane.until("the lent pod past its first epoch", lambda: log_file.exists()
                and "epoch 0:" in log_file.read_text())
    plane.run("submit", "train", "-p", team_b, *engine.image, "-g", "2", "--", "sleep", "12")
    job = plane.until("a preemption", lambda: (lambda j: j if any(
        e["kind"] == facts.preemption for e in j["events"]) else None)(
            plane.job("hpo1", team_a)))
    preempted = [e["message"].split()[1].rstrip(":") for e in job["events"]
                 if e["kind"] == "Preempted"]
    # Kubernetes deletes the evicted job's pods: they are gone from its detail
    assert preempted == ([] if facts.reclaims_job else [lent])
    # both jobs in one CLI call, a snapshot (two calls, each a second or more on a loaded
    # machine, once never saw both at once); team-b's pod runs 12 s for the probe to see it
    beside = 0 if facts.reclaims_job else 2
    plane.until(f"hpo1 on {beside} pods beside train", lambda: {
        j["name"]: j["running"] for j in plane.json("list", "-A")} == {"hpo1": beside,
                                                                      "train": 1})
    get = plane.run("get", "hpo1").stdout
    assert "Preempted" in get and (facts.reclaims_job or lent in get)

    job = engine.finished("hpo1", team_a, timeout=240, every=1.0)
    assert job["job"]["status"] == "Succeeded" and job["job"]["succeeded"] == 12
    assert job["job"]["failed"] == 0
    index = int(lent.split("-")[1])
    facts.records.preempted(plane, "hpo1", team_a, str(index))

    # the preempted pod's index ran again (as its next attempt where the engine keeps the
    # preempted pod), and some later pod (whichever picked first) was handed each
    # preempted trial and resumed it from its checkpoint
    names = [p["name"] for p in job["pods"]]
    assert (index, 0 if facts.reclaims_job else 1) in \
        {(p["index"], p["attempt"]) for p in job["pods"] if p["status"] == "Succeeded"}
    logs = {n: p.stdout for n, p in zip(names, plane.run_all(
        *(["logs", "hpo1", "--pod", n] for n in names)))}
    uid = job["job"]["uid"]
    results = hpo.results(nfs / f"hpo1-{uid}")
    resumed = [n for n, text in logs.items() if "Picked preempted HPO experiment #" in text]
    # one trial was preempted, or (a whole job evicted) each still going at that moment
    again = sum(t.attempts == 2 for t in results)
    assert len(resumed) == again and (again == 1 or (facts.reclaims_job and again >= 1)), \
        {n: t[:200] for n, t in logs.items()}
    assert all("Resuming from checkpoint" in logs[n] for n in resumed)
    # the lent pod's own log, from the file (Kubernetes keeps no deleted pod's log)
    lent_log = facts.log_file(plane.home, job, lent).read_text()
    assert "Using HPO directory /nfs/hpo" in lent_log
    assert "Picked HPO experiment #" in lent_log

    # one file holds the 12 configurations with their reports; the best is marked
    assert len(results) == 12 and all(t.status == "finished" for t in results)
    assert len({tuple(sorted(t.config.items())) for t in results}) == 12
    assert all(t.epoch == epochs - 1 for t in results)
    assert sorted(t.attempts for t in results)[-1] == 2
    show = plane.run("hpo", "show", str(nfs / f"hpo1-{uid}")).stdout
    assert show.splitlines()[1].split()[0] == "TRIAL" and show.splitlines()[2].startswith("best")

    plane.run("delete", "hpo1")
    assert [j["name"] for j in plane.json("list", "-A")] == ["train"]
