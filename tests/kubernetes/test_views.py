"""The Kubernetes engine's pure parts on objects as the API server sends them: no client, no
API server (not even the fake one). Small builders make the objects; tables list the cases."""

from __future__ import annotations

import json
from typing import Any

import pytest

from podsweep.cluster.base import JobInfo
from podsweep.cluster.kubernetes.api import api_error, api_message
from podsweep.cluster.kubernetes.objects import (
    PROJECT_LABEL,
    SPEC_ANNOTATION,
    job_object,
)
from podsweep.cluster.kubernetes.views import (
    job_detail,
    job_info,
    job_infos,
    node_gpus,
    nominal,
    pod_infos,
    pod_status,
    pods_left,
    project_infos,
)
from podsweep.errors import (
    Conflict,
    Forbidden,
    NotFound,
    PodsweepError,
    Unavailable,
    UsageError,
)
from podsweep.model import JobSpec

T0 = 1_750_000_000.0      # 2025-06-15T15:06:40Z


def stamp(seconds: float) -> str:
    from datetime import datetime, timezone

    return datetime.fromtimestamp(T0 + seconds, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def pod(name: str, index: int = 0, phase: str = "Running", created: float = 0, *,
        job_uid: str = "uid-1", project: str = "team-a", node: str | None = None,
        gpus: int = 0, deleting: bool = False, conditions: list[dict[str, Any]] | None = None,
        waiting: str | None = None, ended: dict[str, Any] | None = None,
        reason: str | None = None) -> dict[str, Any]:
    """A pod of an Indexed Job, as the API server sends it."""
    meta: dict[str, Any] = {
        "name": name, "creationTimestamp": stamp(created),
        "labels": {PROJECT_LABEL: project},
        "annotations": {"batch.kubernetes.io/job-completion-index": str(index)},
        "ownerReferences": [{"kind": "Job", "controller": True, "uid": job_uid}]}
    if deleting:
        meta["deletionTimestamp"] = stamp(created + 50)
    state: dict[str, Any] = {}
    if waiting:
        state["waiting"] = {"reason": waiting}
    if ended is not None:
        state["terminated"] = ended
    status: dict[str, Any] = {"phase": phase, "conditions": conditions or [],
                              "containerStatuses": [{"name": "main", "state": state}]}
    if reason:
        status["reason"] = reason
    spec: dict[str, Any] = {"containers": [{"name": "main", "resources": {
        "limits": {"nvidia.com/gpu": str(gpus)} if gpus else {}}}]}
    if node:
        spec["nodeName"] = node
    return {"metadata": meta, "spec": spec, "status": status}


def disrupted(message: str = "Preempted to accommodate a workload") -> list[dict[str, Any]]:
    return [{"type": "DisruptionTarget", "status": "True", "reason": "PreemptionByScheduler",
             "message": message}]


def job(name: str = "hpo1", created: float = 0, *, uid: str = "uid-1", suspend: bool = False,
        gpus: int = 1, parallelism: int = 2, completions: int = 4, succeeded: int = 0,
        failed: int = 0, conditions: list[dict[str, Any]] | None = None,
        deleting: bool = False, project: str = "team-a") -> dict[str, Any]:
    """A Job as podsweep creates it (:func:`job_object`), as the API server sends it back."""
    spec = JobSpec(name=name, project=project, command=["python", "train.py"], gpus=gpus,
                   parallelism=parallelism, completions=completions, image="example/t:1")
    obj = job_object(spec, "alice")
    obj["metadata"].update(uid=uid, creationTimestamp=stamp(created))
    if deleting:
        obj["metadata"]["deletionTimestamp"] = stamp(created + 90)
    obj["spec"]["suspend"] = suspend
    obj["status"] = {"succeeded": succeeded, "failed": failed, "conditions": conditions or []}
    return obj


def cond(kind: str, at: float, status: str = "True", **more: str) -> dict[str, Any]:
    return {"type": kind, "status": status, "lastTransitionTime": stamp(at), **more}


# ------------------------------------------------------------ pods

@pytest.mark.parametrize("obj, expected", [
    (pod("p", phase="Pending"), ("Pending", None)),
    (pod("p", phase="Pending", waiting="ContainerCreating"), ("Pending", "ContainerCreating")),
    (pod("p"), ("Running", None)),
    (pod("p", phase="Succeeded", ended={"exitCode": 0}), ("Succeeded", None)),
    (pod("p", phase="Failed", ended={"exitCode": 3}), ("Failed", "exit code 3")),
    (pod("p", phase="Failed", ended={"exitCode": 137, "reason": "OOMKilled"}),
     ("Failed", "OOMKilled")),
    (pod("p", phase="Failed", reason="Evicted"), ("Failed", "Evicted")),
    (pod("p", phase="Failed", conditions=disrupted()),
     ("Preempted", "Preempted to accommodate a workload")),
    (pod("p", deleting=True), ("Terminating", "deleted")),
    (pod("p", deleting=True, conditions=disrupted()),
     ("Terminating", "PreemptionByScheduler")),
    # an ended pod stays ended while the garbage collector removes it
    (pod("p", phase="Succeeded", deleting=True), ("Succeeded", None)),
    (pod("p", phase="Unknown", reason="NodeLost"), ("Unknown", "NodeLost")),
])
def test_a_pods_status_and_why(obj: dict[str, Any], expected: tuple[str, str | None]):
    assert pod_status(obj) == expected


def test_pods_in_creation_order_with_each_indexs_attempts_numbered():
    pods = [pod("hpo1-1-b", 1, created=3),
            pod("hpo1-0-a", 0, "Failed", created=1, conditions=disrupted(),
                ended={"exitCode": 143, "finishedAt": stamp(2)}),
            pod("hpo1-0-c", 0, created=4),
            pod("hpo1-1-a", 1, "Failed", created=2,
                ended={"exitCode": 1, "finishedAt": stamp(5)})]
    infos = pod_infos(pods)
    assert [(p.name, p.index, p.attempt, p.status) for p in infos] == [
        ("hpo1-0-a", 0, 0, "Preempted"), ("hpo1-1-a", 1, 0, "Failed"),
        ("hpo1-1-b", 1, 1, "Running"), ("hpo1-0-c", 0, 1, "Running")]
    assert (infos[1].created, infos[1].finished, infos[1].exit_code, infos[1].reason) == \
        (T0 + 2, T0 + 5, 1, "exit code 1")
    assert infos[2].finished is None and infos[2].exit_code is None and infos[2].gpus == []


def test_a_delete_waits_for_the_jobs_own_pods_that_run_or_may_yet():
    pods = [pod("a", phase="Pending"), pod("b"), pod("c", deleting=True),
            pod("d", phase="Unknown"), pod("e", phase="Succeeded"),
            pod("f", phase="Failed", conditions=disrupted()),
            pod("g", job_uid="uid-of-an-earlier-job-of-that-name")]
    assert pods_left(pods, "uid-1") == ["a", "b", "c", "d"]


def test_each_gpu_of_each_node_with_the_running_pod_that_holds_it():
    nodes = [{"metadata": {"name": "n2"}, "status": {"allocatable": {"nvidia.com/gpu": "2"}}},
             {"metadata": {"name": "n1"}, "status": {"allocatable": {"nvidia.com/gpu": "3"}}},
             {"metadata": {"name": "cpu-only"}, "status": {"allocatable": {"cpu": "64"}}}]
    pods = [pod("big", node="n1", gpus=2), pod("ended", phase="Succeeded", node="n2", gpus=1),
            pod("going", node="n2", gpus=1, deleting=True, project="team-b"),
            pod("waiting", phase="Pending", gpus=1), pod("cpu", node="n1")]
    assert [(g["index"], g["name"], g["pod"], g["project"]) for g in node_gpus(nodes, pods)] \
        == [(0, "n1/0", "big", "team-a"), (1, "n1/1", "big", "team-a"), (2, "n1/2", None, None),
            (3, "n2/0", "going", "team-b"), (4, "n2/1", None, None)]


# ------------------------------------------------------------ jobs

def test_a_job_reads_back_as_it_was_submitted():
    info = job_info(job(suspend=True), [])
    assert (info.uid, info.name, info.project, info.user, info.command) == \
        ("uid-1", "hpo1", "team-a", "alice", ["python", "train.py"])
    assert (info.gpus, info.parallelism, info.completions, info.created) == (1, 2, 4, T0)
    assert (info.status, info.pending, info.requested, info.allocated) == ("Pending", 2, 2, 0)
    assert info.message is not None and info.message.startswith("waiting for Kueue")


@pytest.mark.parametrize("obj, pods, expected", [
    # admitted, one pod running, one starting: two would run if GPUs allowed
    (job(), [pod("a"), pod("b", 1, "Pending")], ("Running", None, None, 1, 1)),
    # 3 of 4 done: only one more pod may start, whatever the parallelism
    (job(succeeded=3), [], ("Pending", None, None, 0, 1)),
    (job(succeeded=4, conditions=[cond("Complete", 60)]), [],
     ("Succeeded", T0 + 60, "4 pods succeeded", 0, 0)),
    # the backoff limit in podsweep's words, as the other clusters say it
    (job(failed=7, conditions=[cond("Failed", 70, reason="BackoffLimitExceeded",
                                    message="Job has reached the specified backoff limit")]),
     [], ("Failed", T0 + 70, "7 pods failed (backoff limit 6)", 0, 0)),
    (job(failed=1, conditions=[cond("Failed", 70, reason="DeadlineExceeded",
                                    message="Job was active longer than specified")]),
     [], ("Failed", T0 + 70, "Job was active longer than specified", 0, 0)),
    # foreground deletion under way: deleted, its pods still counted while they stop
    (job(deleting=True), [pod("a", deleting=True)], ("Deleted", T0 + 90, None, 1, 0)),
])
def test_a_jobs_status_counts_and_message(obj: dict[str, Any], pods: list[dict[str, Any]],
                                          expected: tuple[Any, ...]):
    info = job_info(obj, pods)
    assert (info.status, info.finished, info.message, info.running, info.pending) == expected
    assert info.allocated == info.gpus * info.running


def test_a_job_podsweep_did_not_make_shows_its_containers_command():
    obj = job()
    del obj["metadata"]["annotations"][SPEC_ANNOTATION]
    obj["spec"]["template"]["spec"]["containers"][0]["command"] = ["sleep", "1"]
    info = job_info(obj, [pod("a", gpus=1)])
    assert (info.command, info.gpus, info.hpo_dirs) == (["sleep", "1"], 0, [])
    obj["metadata"]["annotations"][SPEC_ANNOTATION] = "{not json"
    assert job_info(obj, []).command == ["sleep", "1"]


def test_jobs_get_their_own_pods_oldest_job_first():
    jobs = [job("late", 20, uid="u-late"), job("early", 10, uid="u-early", project="team-b")]
    pods = [pod("early-0", job_uid="u-early"), pod("late-0", job_uid="u-late"),
            pod("late-1", 1, job_uid="u-late"), pod("stray", job_uid="u-gone")]
    infos = job_infos(jobs, pods)
    assert [(j.name, j.project, j.running) for j in infos] == \
        [("early", "team-b", 1), ("late", "team-a", 2)]


def test_a_jobs_detail_merges_kueues_the_pods_and_the_jobs_events_in_time_order():
    obj = job(suspend=True, conditions=[cond("Suspended", 1, reason="JobSuspended")])
    pods = [pod("hpo1-0-a", created=5, phase="Failed", conditions=disrupted("evicted"),
                ended={"exitCode": 143, "finishedAt": stamp(8)})]
    workload = [cond("QuotaReserved", 6, reason="Pending",
                     message="couldn't assign flavors to pod set main: insufficient quota"),
                cond("Evicted", 7, "True", reason="Preempted", message="Preempted by kueue")]
    workload[0]["status"] = "False"
    detail = job_detail(obj, pods, workload)
    assert [(e.time - T0, e.kind, e.message) for e in detail.events] == [
        (1, "Suspended", "JobSuspended"), (5, "Created", "pod hpo1-0-a"),
        (6, "Kueue QuotaReserved (no)",
         "couldn't assign flavors to pod set main: insufficient quota"),
        (7, "Kueue Evicted", "Preempted by kueue"), (8, "Preempted", "pod hpo1-0-a: evicted")]
    # a suspended job says why Kueue has not admitted it, in Kueue's words
    assert detail.job.message == \
        "waiting for Kueue: couldn't assign flavors to pod set main: insufficient quota"
    assert [p.status for p in detail.pods] == ["Preempted"]
    assert detail.spec["name"] == "hpo1" and detail.spec["image"] == "example/t:1"
    admitted = job_detail(job(), [], workload)            # no longer suspended
    assert admitted.job.message is None


def test_a_jobs_events_say_when_each_pod_started_and_how_the_job_ended_once():
    """As on the other clusters: a Started event per pod that ran (its container's start),
    and the job's end in podsweep's words, once: the Workload's Finished condition repeats
    the Job's own."""
    obj = job(failed=2, conditions=[cond("Failed", 30, reason="BackoffLimitExceeded",
                                         message="Job has reached the specified backoff limit")])
    obj["spec"]["backoffLimit"] = 1
    pods = [pod("bad-0-a", created=5, phase="Failed", node="n1",
                ended={"exitCode": 3, "startedAt": stamp(6), "finishedAt": stamp(7)}),
            pod("bad-0-b", created=10, node="n1"),
            pod("bad-0-c", created=12, phase="Pending")]
    pods[1]["status"]["containerStatuses"][0]["state"] = {"running": {"startedAt": stamp(11)}}
    workload = [cond("Finished", 31, reason="JobFinished", message="Job failed")]
    events = [(e.time - T0, e.kind, e.message) for e in job_detail(obj, pods, workload).events]
    assert events == [
        (5, "Created", "pod bad-0-a"), (6, "Started", "pod bad-0-a on n1"),
        (7, "Failed", "pod bad-0-a: exit code 3"), (10, "Created", "pod bad-0-b"),
        (11, "Started", "pod bad-0-b on n1"), (12, "Created", "pod bad-0-c"),
        (30, "Failed", "2 pods failed (backoff limit 1)")]


# ------------------------------------------------------------ projects

def test_a_cluster_queues_quotas_in_any_form_the_api_server_writes():
    queue = {"spec": {"resourceGroups": [{"flavors": [{"resources": [
        {"name": "nvidia.com/gpu", "nominalQuota": 2}, {"name": "cpu", "nominalQuota": "100k"},
        {"name": "memory", "nominalQuota": "1Gi"}]}]}]}}
    assert (nominal(queue, "nvidia.com/gpu"), nominal(queue, "cpu")) == (2, 100_000)
    assert nominal(queue, "example.com/fpga") == 0 and nominal({}, "cpu") == 0


def test_a_projects_quotas_and_what_its_jobs_hold():
    def held(project: str, running: int, pending: int) -> JobInfo:
        return JobInfo("u", "j", project, "alice", "Running", T0, None, 1, 4, 4, 0, 0,
                       running, pending, running, running + pending, ["true"])

    jobs = [held("team-a", 2, 1), held("team-a", 1, 0), held("team-b", 1, 3)]
    infos = project_infos(["team-a", "team-c"], {"team-a": (3, 8)}, jobs)
    assert [(p.name, p.deserved, p.allocated, p.running, p.pending, p.share, p.cpus,
             p.cpu_share) for p in infos] == [("team-a", 3, 3, 3, 1, 3.0, 8, 8.0),
                                              ("team-c", 0, 0, 0, 0, 0.0, 0, 0.0)]


# ------------------------------------------------------------ the API's errors

class Refused(Exception):
    """What the client raises for a refused call (ApiException's fields)."""

    def __init__(self, status: int | None, body: str | None, reason: str = "Reason") -> None:
        super().__init__(reason)
        self.status, self.body, self.reason = status, body, reason


@pytest.mark.parametrize("status, kind", [
    (404, NotFound), (409, Conflict), (401, Forbidden), (403, Forbidden), (400, UsageError),
    (422, UsageError), (500, Unavailable), (503, Unavailable), (None, Unavailable),
    (429, PodsweepError)])
def test_a_refused_call_is_podsweeps_error_of_its_status(status: int | None,
                                                          kind: type[PodsweepError]):
    body = json.dumps({"kind": "Status", "message": 'jobs.batch "hpo1" already exists'})
    error = api_error("create a Job", Refused(status, body))
    assert type(error) is kind
    assert str(error) == 'Kubernetes refused to create a Job: jobs.batch "hpo1" already exists'


def test_a_refusal_without_a_status_body_says_the_http_reason():
    assert api_message(Refused(502, "<html>bad gateway</html>", "Bad Gateway")) == \
        "Bad Gateway"
    assert api_message(Refused(502, None, "Bad Gateway")) == "Bad Gateway"
    assert api_message(Refused(403, "{}", "Forbidden")) == "Forbidden"


def test_the_package_exports_and_the_engine_registry_resolves_without_the_client(
        monkeypatch: pytest.MonkeyPatch):
    import sys

    from podsweep.cluster import ENGINES
    from podsweep.cluster import kubernetes as package

    monkeypatch.setitem(sys.modules, "kubernetes", None)     # as if not installed
    assert ENGINES["kubernetes"]() is package.KubernetesCluster
    assert sorted(package.__all__) == ["KubernetesCluster", "job_info", "job_object",
                                       "pod_infos", "pod_status", "project_objects"]
