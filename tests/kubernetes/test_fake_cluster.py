"""The fake cluster's own behaviour (tests/kubernetes/fake_cluster.py, fake_kueue.py), with
podsweep's real Kubernetes engine making the projects and Jobs it acts on.

Kueue's decisions are checked one scheduling pass at a time (:meth:`FakeKueue.sync`, no
thread), the pods' lives with the whole fake cluster running.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("kubernetes")

from podsweep.cluster import open_cluster
from podsweep.cluster.kubernetes import KubernetesCluster
from podsweep.cluster.kubernetes.views import condition
from podsweep.model import JobSpec

from .fake_apiserver import FakeApiServer
from .fake_cluster import FakeCluster
from .fake_kueue import FakeKueue


@pytest.fixture
def fake() -> Iterator[FakeApiServer]:
    with FakeApiServer(termination_delay=None) as server:
        server.add_node("node-1", 4)
        yield server


@pytest.fixture
def engine(fake: FakeApiServer, tmp_path: Path) -> Iterator[KubernetesCluster]:
    loop = asyncio.new_event_loop()
    cluster = open_cluster(tmp_path, None, loop,  # type: ignore[arg-type]
                           {"cluster": "kubernetes",
                            "kubeconfig": str(fake.kubeconfig(tmp_path / "kubeconfig"))})
    assert isinstance(cluster, KubernetesCluster)
    cluster.recover()
    yield cluster
    cluster.shutdown()
    loop.close()


def job(name: str, project: str, command: str, **kw: Any) -> JobSpec:
    return JobSpec(name=name, project=project, command=["sh", "-c", command],
                   image="busybox:1.36", **kw)


def until(what: str, probe: Any, timeout: float = 60) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if found := probe():
            return found
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def workload(fake: FakeApiServer, ns: str, job: str | None = None) -> dict[str, Any]:
    """The namespace's one Workload (of ``job``, if given), live (as Kueue changes it)."""
    with fake.changed:
        [found] = [w for w in fake.objects_of("Workload") if w["metadata"]["namespace"] == ns
                   and (job is None or w["metadata"]["ownerReferences"][0]["name"] == job)]
    return found


def test_pods_run_as_processes_with_their_index_environment_and_log(
        fake: FakeApiServer, engine: KubernetesCluster, tmp_path: Path):
    engine.create_project("team-a", 2)
    engine.submit(job("hi", "team-a", 'echo "$JOB_COMPLETION_INDEX $PODSWEEP_POD_INDEX '
                                      '$PODSWEEP_POD_NAME $(pwd) $CUDA_VISIBLE_DEVICES"',
                      gpus=1, parallelism=2, completions=3), "alice")
    with FakeCluster(fake, tmp_path / "logs"):
        detail = until("hi to end", lambda: (d := engine.job("team-a", "hi")).job.status in
                       ("Succeeded", "Failed") and d)
    assert detail.job.status == "Succeeded" and detail.job.succeeded == 3
    assert sorted((p.index, p.status, p.exit_code) for p in detail.pods) == \
        [(i, "Succeeded", 0) for i in range(3)]
    for pod in detail.pods:
        # the image's working directory (busybox's /); none of this machine's GPU variables
        expected = f"{pod.index} {pod.index} {pod.name} / \n"
        assert fake.logs[("podsweep-team-a", pod.name)].decode() == expected
        assert (tmp_path / "logs" / "podsweep-team-a" / f"{pod.name}.log").read_text() == \
            expected
        assert fake.get("Pod", "podsweep-team-a", pod.name)["spec"]["nodeName"] == "node-1"
    assert condition(workload(fake, "podsweep-team-a"), "Finished") is not None


def test_kueue_admits_what_the_cohort_lends_and_reclaims_it_by_evicting_the_whole_borrower(
        fake: FakeApiServer, engine: KubernetesCluster):
    engine.create_project("team-a", 2)
    engine.create_project("team-b", 2)       # CPU quota 0: no CPU limit, so no CPU borrowed
    engine.submit(job("hpo1", "team-a", "sleep 60", gpus=1, parallelism=3, completions=6),
                  "alice")
    kueue = FakeKueue(fake)
    with fake.changed:
        kueue.sync()
        hpo1 = workload(fake, "podsweep-team-a")
        # 3 GPUs: 2 of team-a's and 1 of team-b's, lent while team-b does not use it
        assert condition(hpo1, "Admitted") is not None
        assert hpo1["status"]["admission"]["podSetAssignments"][0]["resourceUsage"] == \
            {"cpu": "3", "nvidia.com/gpu": "3"}
        assert fake.objects[("Job", "podsweep-team-a", "hpo1")]["spec"]["suspend"] is False
        pods = [fake.add_pod("podsweep-team-a", "hpo1", i) for i in range(3)]
    engine.submit(job("train", "team-b", "true", gpus=2), "bob")
    with fake.changed:
        kueue.sync()
        train = workload(fake, "podsweep-team-b")
        assert condition(train, "QuotaReserved") is None
        assert "insufficient unused quota for nvidia.com/gpu" in \
            next(c for c in train["status"]["conditions"]
                 if c["type"] == "QuotaReserved")["message"]
        evicted = condition(hpo1, "Evicted")
        assert evicted is not None and evicted["reason"] == "Preempted"
        assert condition(hpo1, "Preempted")["reason"] == "InCohortReclamation"  # type: ignore
        assert fake.objects[("Job", "podsweep-team-a", "hpo1")]["spec"]["suspend"] is True
        kueue.sync()        # its pods still run: its quota is not free yet
        assert condition(train, "QuotaReserved") is None
        for name in pods:
            fake.set_pod("podsweep-team-a", name, "Failed", 143, disruption="EvictionByKueue")
        kueue.sync()
        assert condition(hpo1, "QuotaReserved") is None and condition(hpo1, "Requeued")
        assert condition(train, "Admitted") is not None
        # hpo1 waits again: 3 GPUs are not free beside train's 2
        kueue.sync()
        assert condition(hpo1, "QuotaReserved") is None


def test_kueue_reclaims_nothing_for_a_workload_that_would_borrow_another_resource(
        fake: FakeApiServer, engine: KubernetesCluster):
    """Kueue's rule (reclaimWithinCohort without borrowWithinCohort): the preemptor must fit
    its queue's nominal quota in every resource it asks. team-b's job asks 2 CPUs on a CPU
    quota of 1, so it borrows CPUs, and waits for its GPUs rather than take them back."""
    engine.create_project("team-a", 2)
    engine.create_project("team-b", 2, 1)
    engine.submit(job("hpo1", "team-a", "sleep 60", gpus=1, parallelism=3, completions=6),
                  "alice")
    engine.submit(job("train", "team-b", "true", gpus=2, cpu=2), "bob")
    kueue = FakeKueue(fake)
    with fake.changed:
        kueue.sync()
        hpo1, train = workload(fake, "podsweep-team-a"), workload(fake, "podsweep-team-b")
        assert condition(hpo1, "Admitted") is not None
        kueue.sync()
        assert condition(hpo1, "Evicted") is None and condition(train, "QuotaReserved") is None


def test_a_project_without_cpu_quota_lends_no_cpus(
        fake: FakeApiServer, engine: KubernetesCluster):
    """CPU quota 0 is a cpu quota of the node's 16 CPUs with a lendingLimit of 0: its own,
    lent to no one. team-e (4 CPUs) borrows only the 12 that no project has as quota."""
    engine.create_project("team-a", 2)
    engine.create_project("team-e", 0, 4)
    engine.submit(job("wide", "team-e", "true", parallelism=17, completions=17), "alice")
    kueue = FakeKueue(fake)
    with fake.changed:
        kueue.sync()
        wide = workload(fake, "podsweep-team-e")
        assert condition(wide, "QuotaReserved") is None
        assert "insufficient unused quota for cpu in flavor default-flavor, 1 more needed" \
            in next(c for c in wide["status"]["conditions"]
                    if c["type"] == "QuotaReserved")["message"]
    engine.submit(job("fits", "team-e", "true", parallelism=16, completions=16), "alice")
    with fake.changed:
        kueue.sync()
        assert condition(workload(fake, "podsweep-team-e", "fits"), "Admitted") is not None
    # team-a's job takes its own 16 CPUs, none of which team-e borrowed: Kueue admits 32 on
    # the node's 16, and the kube-scheduler holds what does not fit (docs/kubernetes.md)
    engine.submit(job("many", "team-a", "true", parallelism=16, completions=16), "bob")
    with fake.changed:
        kueue.sync()
        assert condition(workload(fake, "podsweep-team-a"), "Admitted") is not None


def test_a_deleted_pod_gets_sigterm_then_sigkill_after_its_grace_period(
        fake: FakeApiServer, engine: KubernetesCluster, tmp_path: Path):
    engine.create_project("team-a", 1)
    engine.submit(job("stubborn", "team-a", "trap 'echo got TERM' TERM; echo ready; "
                                            "while :; do sleep 0.1; done",
                      grace_period=1), "alice")
    with FakeCluster(fake, tmp_path / "logs") as cluster:
        [pod] = until("a running pod", lambda: [
            p for p in fake.all("Pod", "podsweep-team-a")
            if b"ready" in fake.logs.get(("podsweep-team-a", p["metadata"]["name"]), b"")])
        name = pod["metadata"]["name"]
        pid = cluster._procs[("podsweep-team-a", name)].pid
        fake.handle("DELETE", "/apis/batch/v1/namespaces/podsweep-team-a/jobs/stubborn",
                    {"propagationPolicy": "Foreground"}, None, "")
        until("the pod gone", lambda: fake.get("Pod", "podsweep-team-a", name) is None)
        until("the job gone", lambda: fake.get("Job", "podsweep-team-a", "stubborn") is None)
    # the shell took SIGTERM (and went on); SIGKILL ended it
    assert (tmp_path / "logs" / "podsweep-team-a" / f"{name}.log").read_text() == \
        "ready\ngot TERM\n"
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
