"""KubernetesCluster through the official client against FakeApiServer (a fake API server:
no Kubernetes runs here). The test plays Kueue, the job controller and the kubelets through
the fake and checks what podsweep sees and does."""

from __future__ import annotations

import asyncio
import http.client
import json
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("kubernetes")

from podsweep.cluster import BlockingViews, open_cluster, run_view
from podsweep.cluster.kubernetes import KubernetesCluster
from podsweep.cluster.kubernetes.objects import IDLE_QUEUE
from podsweep.errors import Conflict, EngineError, NotFound, Unavailable, UsageError
from podsweep.model import JobSpec, Volume

from .fake_apiserver import TOKEN, FakeApiServer

NS = "podsweep-team-a"


@pytest.fixture
def fake() -> Iterator[FakeApiServer]:
    with FakeApiServer() as server:
        server.add_node("node-1", 4)
        yield server


@pytest.fixture
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    loop = asyncio.new_event_loop()
    yield loop
    loop.close()


def opened(fake: FakeApiServer, tmp_path: Path, loop: asyncio.AbstractEventLoop,
           **settings: Any) -> KubernetesCluster:
    kubeconfig = fake.kubeconfig(tmp_path / "kubeconfig")
    cluster = open_cluster(tmp_path, None, loop,  # type: ignore[arg-type]
                           {"cluster": "kubernetes", "kubeconfig": str(kubeconfig), **settings})
    assert isinstance(cluster, KubernetesCluster)
    cluster.recover()
    return cluster


@pytest.fixture
def cluster(fake: FakeApiServer, tmp_path: Path,
            loop: asyncio.AbstractEventLoop) -> Iterator[KubernetesCluster]:
    c = opened(fake, tmp_path, loop)
    c.create_project("team-a", 2)
    yield c
    c.shutdown()


def spec(name: str = "hpo1", **kw: Any) -> JobSpec:
    fields: dict[str, Any] = dict(name=name, project="team-a", command=["python", "train.py"],
                                  gpus=1, parallelism=2, completions=4, image="example/t:1")
    fields.update(kw)
    return JobSpec(**fields)


def test_a_project_is_a_namespace_with_its_kueue_queues_and_quota(
        fake: FakeApiServer, cluster: KubernetesCluster):
    ns = fake.get("Namespace", None, NS)
    assert ns is not None and ns["metadata"]["labels"] == {"podsweep.io/project": "team-a"}
    queue = fake.get("ClusterQueue", None, "team-a")
    assert queue is not None and queue["spec"]["cohort"] == "podsweep"
    quota = queue["spec"]["resourceGroups"][0]["flavors"][0]["resources"][0]
    assert quota == {"name": "nvidia.com/gpu", "nominalQuota": 2}
    assert fake.get("LocalQueue", NS, "team-a")["spec"]["clusterQueue"] == "team-a"
    cluster.create_project("team-b", 1)          # shares the ResourceFlavor
    assert len(fake.all("ResourceFlavor")) == 1
    assert [(p.name, p.deserved) for p in cluster.projects()] == [("team-a", 2), ("team-b", 1)]
    assert cluster.project_exists("team-b") and not cluster.project_exists("team-c")
    assert not cluster.project_exists("Not_A_Name")
    with pytest.raises(Conflict, match="already exists"):
        cluster.create_project("team-a", 3)
    cluster.set_quota("team-a", 3)
    queue = fake.get("ClusterQueue", None, "team-a")
    assert queue["spec"]["resourceGroups"][0]["flavors"][0]["resources"][0]["nominalQuota"] == 3
    assert queue["spec"]["cohort"] == "podsweep"      # a merge patch kept the rest
    assert {p.name: p.deserved for p in cluster.projects()}["team-a"] == 3
    with pytest.raises(NotFound):
        cluster.set_quota("team-c", 1)
    with pytest.raises(UsageError):
        cluster.create_project("team-d", -1)
    # CPU quotas: the queue's cpu quota binds; the idle CPUs' queue lends what no project has.
    # CPU quota 0 is no CPU limit: the node's 16 CPUs, lent to no one
    assert quotas(fake, "team-a") == {"nvidia.com/gpu": 3, "cpu": (16, 0)}
    idle = fake.get("ClusterQueue", None, IDLE_QUEUE)
    assert idle is not None and idle["spec"]["cohort"] == "podsweep"
    assert "namespaceSelector" not in idle["spec"]            # Kueue: no namespace at all
    assert not [q for q in fake.all("LocalQueue") if q["spec"]["clusterQueue"] == IDLE_QUEUE]
    assert quotas(fake, IDLE_QUEUE) == {"nvidia.com/gpu": 0, "cpu": 16}    # the node's 16
    cluster.create_project("team-e", 1, 4)
    assert quotas(fake, "team-e") == {"nvidia.com/gpu": 1, "cpu": 4}
    assert quotas(fake, IDLE_QUEUE)["cpu"] == 12
    cluster.set_quota("team-a", cpus=6)
    assert quotas(fake, "team-a") == {"nvidia.com/gpu": 3, "cpu": 6}
    assert quotas(fake, IDLE_QUEUE)["cpu"] == 6
    cluster.set_quota("team-a", gpus=2)                       # its CPU quota stays
    assert quotas(fake, "team-a") == {"nvidia.com/gpu": 2, "cpu": 6}
    cluster.set_quota("team-e", cpus=20)                      # more than the nodes have
    assert quotas(fake, IDLE_QUEUE)["cpu"] == 0
    assert {p.name: (p.deserved, p.cpus) for p in cluster.projects()} == \
        {"team-a": (2, 6), "team-b": (1, 0), "team-e": (1, 20)}
    cluster.set_quota("team-a", cpus=0)                       # back to no CPU limit
    assert quotas(fake, "team-a") == {"nvidia.com/gpu": 2, "cpu": (16, 0)}
    cluster.set_quota("team-a", gpus=1)                       # and it stays so
    assert quotas(fake, "team-a") == {"nvidia.com/gpu": 1, "cpu": (16, 0)}
    assert {p.name: p.cpus for p in cluster.projects()}["team-a"] == 0
    cluster.set_quota("team-a", 2, 6)
    with pytest.raises(UsageError, match="--cpus"):
        cluster.set_quota("team-a", cpus=-1)
    with pytest.raises(UsageError, match="--cpus"):
        cluster.create_project("team-f", 1, -2)
    assert not cluster.project_exists("team-f")
    assert quotas(fake, "team-a") == {"nvidia.com/gpu": 2, "cpu": 6}


def test_the_idle_queue_lends_the_gpus_no_project_has_as_quota(
        fake: FakeApiServer, cluster: KubernetesCluster):
    """As the local cluster lends idle GPUs: Kueue lends only quota, so a project's job
    over its quota (the README's 3 pods on a 2-GPU project) would wait for ever on a node
    with GPUs no project holds."""
    assert quotas(fake, IDLE_QUEUE) == {"nvidia.com/gpu": 2, "cpu": 16}    # 4 less team-a's
    cluster.create_project("team-b", 1)
    assert quotas(fake, IDLE_QUEUE)["nvidia.com/gpu"] == 1
    cluster.set_quota("team-a", 5)          # more than the nodes have: nothing is idle
    assert quotas(fake, IDLE_QUEUE)["nvidia.com/gpu"] == 0
    cluster.set_quota("team-a", 1)
    assert quotas(fake, IDLE_QUEUE) == {"nvidia.com/gpu": 2, "cpu": 16}


def quotas(fake: FakeApiServer, queue: str) -> dict[str, Any]:
    """A ClusterQueue's nominal quotas by resource; (nominal, lendingLimit) where it has a
    lendingLimit."""
    found = fake.get("ClusterQueue", None, queue)
    assert found is not None
    return {r["name"]: (r["nominalQuota"], r["lendingLimit"]) if "lendingLimit" in r
            else r["nominalQuota"]
            for r in found["spec"]["resourceGroups"][0]["flavors"][0]["resources"]}


@pytest.mark.parametrize("before", [
    100_000,    # made before CPU quotas bound: a cpu quota that never did
    0,          # CPU quota 0 as it was first written: every job borrowed CPUs
])
def test_a_queue_from_before_gets_cpu_quota_0_as_written_now_at_up(
        fake: FakeApiServer, tmp_path: Path, loop: asyncio.AbstractEventLoop, before: int):
    from podsweep.cluster.kubernetes.objects import project_objects
    from podsweep.cluster.kubernetes.views import cpu_quota

    old = next(o for o in project_objects("team-x", 2) if o["kind"] == "ClusterQueue")
    old["spec"]["resourceGroups"][0]["flavors"][0]["resources"][1] = \
        {"name": "cpu", "nominalQuota": before}
    assert raw(fake, "POST", "/apis/kueue.x-k8s.io/v1beta1/clusterqueues", old)[0] == 201
    cluster = opened(fake, tmp_path, loop)          # up: recover()
    try:
        assert quotas(fake, "team-x") == {"nvidia.com/gpu": 2, "cpu": (16, 0)}
        assert quotas(fake, IDLE_QUEUE)["cpu"] == 16
        assert cpu_quota(fake.get("ClusterQueue", None, "team-x")) == 0
    finally:
        cluster.shutdown()


def test_a_create_that_stopped_halfway_can_be_finished(fake: FakeApiServer,
                                                      cluster: KubernetesCluster):
    from podsweep.cluster.kubernetes.objects import project_objects

    queues = "/apis/kueue.x-k8s.io/v1beta1/clusterqueues"
    half = next(o for o in project_objects("team-x", 1) if o["kind"] == "ClusterQueue")
    assert raw(fake, "POST", queues, half)[0] == 201      # its namespace never came
    cluster.create_project("team-x", 3)
    assert {p.name: p.deserved for p in cluster.projects()}["team-x"] == 3
    assert fake.get("LocalQueue", "podsweep-team-x", "team-x") is not None
    foreign = {**half, "metadata": {"name": "team-y"}}        # an admin's own queue
    assert raw(fake, "POST", queues, foreign)[0] == 201
    with pytest.raises(Conflict, match="not podsweep's"):
        cluster.create_project("team-y", 1)
    assert fake.get("Namespace", None, "podsweep-team-y") is None


def test_a_job_is_queued_suspended_and_its_pods_make_its_status(
        fake: FakeApiServer, cluster: KubernetesCluster):
    info = cluster.submit(spec(volumes=[Volume.parse("pvc:data:/data")]), "alice")
    assert (info.status, info.user, info.pending, info.requested) == ("Pending", "alice", 2, 2)
    job = fake.get("Job", NS, "hpo1")
    assert job["spec"]["suspend"] is True
    assert job["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "team-a"
    # -i is the pod's image, as the API server stored it
    assert [c["image"] for c in job["spec"]["template"]["spec"]["containers"]] == \
        ["example/t:1"]
    assert job["spec"]["template"]["spec"]["volumes"][0]["persistentVolumeClaim"] == \
        {"claimName": "data", "readOnly": False}
    [listed] = cluster.jobs(["team-a"])
    assert "Kueue" in (listed.message or "") and listed.uid == job["metadata"]["uid"]

    quota = "couldn't assign flavors to pod set main: insufficient unused quota for " \
            "nvidia.com/gpu in flavor default-flavor, 1 more needed"
    fake.set_workload(NS, "hpo1", ("QuotaReserved", "False", "Pending", quota))
    assert cluster.job("team-a", "hpo1").job.message == f"waiting for Kueue: {quota}"

    fake.admit(NS, "hpo1")
    first = fake.add_pod(NS, "hpo1", 0)
    fake.add_pod(NS, "hpo1", 1, phase="Pending")
    [listed] = cluster.jobs(None)
    assert (listed.status, listed.running, listed.pending, listed.allocated) == \
        ("Running", 1, 1, 1)
    [project] = cluster.projects()
    assert (project.allocated, project.running, project.pending) == (1, 1, 1)

    # index 0 preempted by Kueue: not a failure, and index 0 runs again as attempt 1
    fake.set_pod(NS, first, "Failed", exit_code=143, disruption="PreemptionByKueue")
    again = fake.add_pod(NS, "hpo1", 0)
    fake.set_pod(NS, again, "Failed", exit_code=2)
    detail = cluster.job("team-a", "hpo1")
    pods = {p.name: p for p in detail.pods}
    assert (pods[first].status, pods[first].attempt, pods[first].exit_code) == \
        ("Preempted", 0, 143)
    assert "PreemptionByKueue" in (pods[first].reason or "")
    assert (pods[again].status, pods[again].attempt, pods[again].index) == ("Failed", 1, 0)
    assert detail.job.failed == 1 and detail.spec["volumes"] == ["pvc:data:/data"]
    assert [e.kind for e in detail.events].count("Preempted") == 1
    # Kueue's own record of a preemption (its Workload evicted) is among the events
    fake.set_workload(NS, "hpo1", ("Evicted", "True", "Preempted",
                                   "Preempted to accommodate a workload due to reclamation "
                                   "within the cohort"))
    events = cluster.job("team-a", "hpo1").events
    assert any(e.kind == "Kueue Evicted" and "reclamation within the cohort" in e.message
               for e in events)

    for index in range(4):
        fake.set_pod(NS, fake.add_pod(NS, "hpo1", index), "Succeeded")
    [done] = cluster.jobs(["team-a"])
    assert (done.status, done.succeeded, done.pending, done.allocated) == \
        ("Succeeded", 4, 0, 0)
    assert done.finished is not None and done.finished >= done.created


def test_bad_submissions_are_refused_with_one_line(fake: FakeApiServer,
                                                   cluster: KubernetesCluster):
    with pytest.raises(UsageError, match="pass -i IMAGE"):
        cluster.submit(spec(image=None), "alice")
    with pytest.raises(NotFound, match="project create team-z"):
        cluster.submit(spec(project="team-z"), "alice")
    cluster.submit(spec(), "alice")
    with pytest.raises(Conflict, match="already exists in project 'team-a'"):
        cluster.submit(spec(), "bob")
    assert fake.get("Job", NS, "hpo1")["metadata"]["labels"]["podsweep.io/user"] == "alice"
    with pytest.raises(NotFound):
        cluster.job("team-a", "nope")
    with pytest.raises(NotFound):
        cluster.job("team-a", "Bad/Name")


def raw(fake: FakeApiServer, method: str, path: str, body: Any = None,
        content_type: str = "application/json") -> tuple[int, dict[str, Any]]:
    """A request to the fake as any client could send it (the official client checks some
    of this itself before sending)."""
    from urllib.parse import urlsplit

    conn = http.client.HTTPConnection(urlsplit(fake.url).netloc, timeout=10)
    conn.request(method, path, body=json.dumps(body) if body is not None else None,
                 headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": content_type})
    response = conn.getresponse()
    data = json.loads(response.read() or b"{}")
    conn.close()
    return response.status, data


def test_the_fake_refuses_what_a_real_api_server_would(fake: FakeApiServer,
                                                      cluster: KubernetesCluster):
    """The fake has teeth: an unknown field, a wrong apiVersion, a namespace that does not
    exist, a JSON patch, an Orphan delete's orphans."""
    from podsweep.cluster.kubernetes.objects import job_object

    jobs = f"/apis/batch/v1/namespaces/{NS}/jobs"
    body = job_object(spec(), "alice")
    body["spec"]["parallelismm"] = 2
    code, status = raw(fake, "POST", jobs, body)
    assert code == 422 and "parallelismm" in status["message"]
    body = job_object(spec(), "alice")
    body["apiVersion"] = "batch/v2"
    assert raw(fake, "POST", jobs, body)[0] == 400
    assert raw(fake, "POST", "/apis/batch/v1/namespaces/nope/jobs",
               job_object(spec(), "alice"))[0] in (400, 404)
    queue = {"apiVersion": "kueue.x-k8s.io/v1beta1", "kind": "ClusterQueue",
             "metadata": {"name": "x"}, "spec": {"cohortName": "podsweep"}}   # v1beta2's
    code, status = raw(fake, "POST", "/apis/kueue.x-k8s.io/v1beta1/clusterqueues", queue)
    assert code == 422 and "cohortName" in status["message"]
    code, _ = raw(fake, "PATCH", "/apis/kueue.x-k8s.io/v1beta1/clusterqueues/team-a",
                  [{"op": "replace", "path": "/spec/cohort", "value": "x"}],
                  "application/json-patch+json")
    assert code == 415
    assert raw(fake, "GET", f"/api/v1/namespaces/{NS}/pods?tail=3")[0] == 400
    assert fake.all("Job") == [] and fake.get("ClusterQueue", None, "x") is None
    # the API's default for a Job's delete orphans its pods: podsweep must never rely on it
    cluster.submit(spec(), "alice")
    pod = fake.add_pod(NS, "hpo1", 0)
    assert raw(fake, "DELETE", f"{jobs}/hpo1")[0] == 200
    assert fake.get("Pod", NS, pod)["metadata"]["ownerReferences"] == []


def test_logs_tail_and_follow_through_the_api(fake: FakeApiServer, cluster: KubernetesCluster,
                                              loop: asyncio.AbstractEventLoop):
    cluster.submit(spec(), "alice")
    fake.admit(NS, "hpo1")
    pod = fake.add_pod(NS, "hpo1", 0)
    waiting = fake.add_pod(NS, "hpo1", 1, phase="Pending")
    fake.write_log(NS, pod, "epoch 1\nepoch 2\nepoch 3\n")

    async def read(name: str, **kw: Any) -> bytes:
        return b"".join([c async for c in cluster.pod_log("team-a", "hpo1", name, **kw)])

    assert loop.run_until_complete(read(pod)) == b"epoch 1\nepoch 2\nepoch 3\n"
    assert loop.run_until_complete(read(pod, tail=1)) == b"epoch 3\n"
    assert loop.run_until_complete(read(pod, tail=0)) == b""
    assert b"waiting to start" in loop.run_until_complete(read(waiting))
    with pytest.raises(NotFound, match="not a pod of job"):
        cluster.pod_log("team-a", "hpo1", "other-0-0")

    def kubelet() -> None:   # the pod goes on writing, then ends
        fake.write_log(NS, pod, "epoch 4\n")
        fake.write_log(NS, pod, "done\n")
        fake.set_pod(NS, pod, "Succeeded")

    async def follow() -> bytes:
        chunks = []
        async for chunk in cluster.pod_log("team-a", "hpo1", pod, tail=1, follow=True):
            chunks.append(chunk)
            if len(chunks) == 1:   # the tail has arrived: now the pod writes more
                threading.Thread(target=kubelet).start()
        return b"".join(chunks)

    assert loop.run_until_complete(asyncio.wait_for(follow(), 30)) == \
        b"epoch 3\nepoch 4\ndone\n"


def test_a_follower_that_goes_away_frees_its_stream(fake: FakeApiServer,
                                                   cluster: KubernetesCluster,
                                                   loop: asyncio.AbstractEventLoop):
    cluster.submit(spec(), "alice")
    pod = fake.add_pod(NS, "hpo1", 0)
    fake.write_log(NS, pod, "line\n")

    async def first_chunk() -> bytes:
        stream = cluster.pod_log("team-a", "hpo1", pod, follow=True)
        chunk = await stream.__anext__()
        await stream.aclose()           # the HTTP client went away
        return chunk

    assert loop.run_until_complete(asyncio.wait_for(first_chunk(), 30)) == b"line\n"
    # the pod still runs; the API still answers
    assert cluster.job("team-a", "hpo1").pods[0].status == "Running"


def test_delete_returns_once_no_pod_of_the_job_runs(tmp_path: Path,
                                                    loop: asyncio.AbstractEventLoop):
    with FakeApiServer(termination_delay=None) as fake:
        fake.add_node("node-1", 4)       # -g 1 fits a node
        cluster = opened(fake, tmp_path, loop)
        cluster.create_project("team-a", 2)
        cluster.submit(spec(), "alice")
        fake.admit(NS, "hpo1")
        pods = [fake.add_pod(NS, "hpo1", i) for i in range(2)]
        fake.write_log(NS, pods[0], "x\n")

        async def scenario() -> None:
            task = asyncio.create_task(cluster.delete("team-a", "hpo1"))
            # the kubelets have not reported the pods gone: the delete cannot be done
            await asyncio.sleep(0.5)
            assert not task.done()
            detail = cluster.job("team-a", "hpo1")
            assert detail.job.status == "Deleted"
            assert {p.status for p in detail.pods} == {"Terminating"}
            fake.end_terminating()
            await asyncio.wait_for(task, 20)

        loop.run_until_complete(scenario())
        # foreground deletion: no orphan pod, and the Job went with its last pod
        assert fake.all("Pod") == [] and fake.get("Job", NS, "hpo1") is None
        assert cluster.jobs(None) == []
        with pytest.raises(NotFound):
            loop.run_until_complete(cluster.delete("team-a", "hpo1"))
        cluster.shutdown()


def test_a_delete_that_cannot_see_its_pods_gone_fails_rather_than_return(
        tmp_path: Path, loop: asyncio.AbstractEventLoop, monkeypatch: pytest.MonkeyPatch):
    """A node that never reports its pods gone (down, cut off): delete must not say they
    stopped. The grace period and the slack set to 0 make its wait end at its first look."""
    from podsweep.cluster.kubernetes import cluster as engine

    monkeypatch.setattr(engine, "DELETE_SLACK", 0.0)
    with FakeApiServer(termination_delay=None) as fake:
        fake.add_node("node-1", 4)       # -g 1 fits a node
        cluster = opened(fake, tmp_path, loop)
        cluster.create_project("team-a", 2)
        cluster.submit(spec(grace_period=0), "alice")
        fake.admit(NS, "hpo1")
        pods = [fake.add_pod(NS, "hpo1", i) for i in range(2)]
        with pytest.raises(EngineError) as refused:
            loop.run_until_complete(cluster.delete("team-a", "hpo1"))
        assert str(refused.value) == (
            f"job 'hpo1' is being deleted, but after 0 s Kubernetes still shows its pods "
            f"{pods[0]}, {pods[1]} running or stopping: their nodes have not reported them "
            f"gone; podsweep delete hpo1 -p team-a waits again")
        detail = cluster.job("team-a", "hpo1")
        assert detail.job.status == "Deleted"
        assert {p.status for p in detail.pods} == {"Terminating"}
        monkeypatch.setattr(engine, "DELETE_SLACK", 120.0)

        async def again() -> None:
            task = asyncio.create_task(cluster.delete("team-a", "hpo1"))
            seen = len(fake.requests)
            while not [p for m, p in fake.requests[seen:] if m == "GET" and
                       p.endswith("/pods")]:         # it has looked at the pods
                await asyncio.sleep(0.01)
            assert not task.done()
            fake.end_terminating()          # the nodes are back and report them gone
            await asyncio.wait_for(task, 30)

        loop.run_until_complete(again())
        assert fake.all("Pod") == [] and fake.get("Job", NS, "hpo1") is None
        cluster.shutdown()


def test_the_views_wait_in_worker_threads_not_on_the_event_loop(
        fake: FakeApiServer, cluster: KubernetesCluster, loop: asyncio.AbstractEventLoop):
    assert isinstance(cluster, BlockingViews)
    cluster.submit(spec(), "alice")
    arrived, release = fake.hold()

    async def scenario() -> list[str]:
        view = asyncio.create_task(run_view(cluster, cluster.jobs, None))
        # the API server holds the view's call; were the call on the loop, nothing here
        # would run until the fake gave up holding it
        await asyncio.to_thread(arrived.wait, 30)
        release.set()
        return [j.name for j in await view]

    assert loop.run_until_complete(scenario()) == ["hpo1"]
    assert fake.released_in_time is True


def test_info_lists_the_nodes_gpus_and_their_holders(fake: FakeApiServer,
                                                     cluster: KubernetesCluster):
    cluster.submit(spec(gpus=2), "alice")
    pod = fake.add_pod(NS, "hpo1", 0)
    info = cluster.info()
    assert info.kind == "kubernetes"
    assert [(g["name"], g["pod"], g["project"]) for g in info.gpus] == \
        [("node-1/0", pod, "team-a"), ("node-1/1", pod, "team-a"), ("node-1/2", None, None),
         ("node-1/3", None, None)]


def test_opening_fails_clearly_without_kueue_or_an_api_server(tmp_path: Path,
                                                              loop: asyncio.AbstractEventLoop):
    with FakeApiServer(kueue=False) as fake, \
            pytest.raises(UsageError, match="Kueue is not installed"):
        opened(fake, tmp_path, loop)
    fake.kubeconfig(tmp_path / "gone")           # its port is closed now
    with pytest.raises(Unavailable, match="cannot reach the Kubernetes API server"):
        opened(fake, tmp_path, loop, kubeconfig=str(tmp_path / "gone"))
    with pytest.raises(UsageError, match="cannot use the kubeconfig"):
        opened(fake, tmp_path, loop, kubeconfig=str(tmp_path / "missing"))


def test_the_settings_choose_the_kubeconfigs_context(fake: FakeApiServer, tmp_path: Path,
                                                     loop: asyncio.AbstractEventLoop):
    import yaml

    config = yaml.safe_load(fake.kubeconfig(tmp_path / "one").read_text())
    config["clusters"].append({"name": "away", "cluster": {"server": "http://127.0.0.1:9"}})
    config["contexts"].append({"name": "away", "context": {"cluster": "away", "user": "fake"}})
    config["current-context"] = "away"
    (tmp_path / "two").write_text(yaml.safe_dump(config))
    cluster = open_cluster(tmp_path, None, loop,  # type: ignore[arg-type]
                           {"cluster": "kubernetes", "kubeconfig": str(tmp_path / "two"),
                            "context": "fake"})
    cluster.recover()                 # the fake answers: the context was taken
    assert cluster.project_exists("team-a") is False
    cluster.shutdown()
    with pytest.raises(Unavailable):
        opened(fake, tmp_path, loop, kubeconfig=str(tmp_path / "two"), context="away")


def test_without_the_client_installed_the_error_says_what_to_install(
        tmp_path: Path, loop: asyncio.AbstractEventLoop, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setitem(sys.modules, "kubernetes", None)     # as if not installed
    with pytest.raises(UsageError, match=r"pip install 'podsweep\[kubernetes\]'"):
        open_cluster(tmp_path, None, loop, {"cluster": "kubernetes"})  # type: ignore[arg-type]


@pytest.mark.parametrize("text, whole", [
    ("16", 16), (4, 4), ("15500m", 15), ("100k", 100_000), ("2k", 2000), ("1Gi", 1 << 30),
    ("1e3", 1000), ("0.5", 0), ("", 0), ("lots", 0), (".", 0)])
def test_quantities_read_back_in_any_form_the_api_server_writes(text: object, whole: int):
    # the API server may hand back 100000 as "100k": a CPU quota read as 0 would be wrong
    from podsweep.cluster.kubernetes.views import quantity

    assert quantity(text) == whole
