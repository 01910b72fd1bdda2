"""The Kubernetes objects podsweep renders: schema-valid offline, Kueue's field names.

batch/v1 Job and v1 Namespace are validated with kubernetes-validate in strict mode (no
unknown field) against a pinned Kubernetes version. Kueue's CRDs are not in it: their
objects are checked against the field names of Kueue's v1beta1 API (written out in
fake_apiserver.KUEUE_FIELDS, which the fake API server enforces too).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from podsweep.cluster.kubernetes.objects import CPU_QUOTA, job_object, project_objects
from podsweep.cluster.kubernetes.views import cpu_quota
from podsweep.errors import UsageError
from podsweep.model import JobSpec, Volume

from .fake_apiserver import KUEUE_FIELDS, PREEMPTION_VALUES

kubernetes_validate = pytest.importorskip("kubernetes_validate")

KUBERNETES = "1.33.0"       # pinned: the schemas this test validates against

SPEC = JobSpec(name="hpo1", project="team-a", command=["python", "train.py"], gpus=1,
               parallelism=3, completions=12, cpu=2, image="example/train:1",
               volumes=[Volume.parse("/nfs:/nfs/hpo"), Volume.parse("/data:/data:ro")],
               env={"EPOCHS": "10"}, working_dir="/workspace", grace_period=45.0)

def validate(obj: dict[str, Any]) -> None:
    kubernetes_validate.validate(obj, KUBERNETES, strict=True)


def test_the_job_is_a_valid_indexed_job_queued_in_its_projects_queue():
    job = job_object(SPEC, "alice")
    validate(job)
    spec = job["spec"]
    assert (spec["completionMode"], spec["completions"], spec["parallelism"]) == \
        ("Indexed", 12, 3)
    assert spec["suspend"] is True and spec["backoffLimit"] == 6
    assert spec["podFailurePolicy"]["rules"][0]["action"] == "Ignore"
    assert job["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "team-a"
    pod = spec["template"]["spec"]
    assert pod["restartPolicy"] == "Never" and pod["terminationGracePeriodSeconds"] == 45
    container = pod["containers"][0]
    assert container["image"] == "example/train:1"
    assert container["resources"]["limits"] == {"nvidia.com/gpu": "1"}
    assert [(m["mountPath"], m["readOnly"]) for m in container["volumeMounts"]] == \
        [("/nfs/hpo", False), ("/data", True)]
    env = {e["name"]: e for e in container["env"]}
    assert env["PODSWEEP_JOB_NAME"]["value"] == "hpo1" and env["EPOCHS"]["value"] == "10"
    assert "job-completion-index" in \
        env["PODSWEEP_POD_INDEX"]["valueFrom"]["fieldRef"]["fieldPath"]


def test_a_job_without_gpus_asks_for_none():
    job = job_object(JobSpec(name="cpu", project="team-a", command=["true"], image="x:1"), "a")
    validate(job)
    assert "limits" not in job["spec"]["template"]["spec"]["containers"][0]["resources"]


def test_an_invalid_object_is_caught_by_the_validation():
    job = job_object(SPEC, "alice")
    job["spec"]["completionMode"] = 3
    with pytest.raises(kubernetes_validate.ValidationError):
        validate(job)
    job = job_object(SPEC, "alice")
    job["spec"]["parallelismm"] = 2
    with pytest.raises(kubernetes_validate.ValidationError):
        validate(job)


def test_project_objects_use_kueues_fields_in_one_cohort():
    objs = {o["kind"]: o for o in project_objects("team-a", 2)}
    validate(objs["Namespace"])
    cq, lq = objs["ClusterQueue"], objs["LocalQueue"]
    for obj in (cq, lq, objs["ResourceFlavor"]):
        assert obj["apiVersion"] == "kueue.x-k8s.io/v1beta1"
    assert set(cq["spec"]) <= KUEUE_FIELDS["ClusterQueue.spec"]
    for group in cq["spec"]["resourceGroups"]:
        assert set(group) <= KUEUE_FIELDS["resourceGroup"]
        for flavor in group["flavors"]:
            assert set(flavor) <= KUEUE_FIELDS["flavor"]
            for resource in flavor["resources"]:
                assert set(resource) <= KUEUE_FIELDS["resource"]
                assert resource["name"] in group["coveredResources"]
    assert set(cq["spec"]["preemption"]) <= KUEUE_FIELDS["preemption"]
    assert set(cq["spec"]["preemption"].values()) <= PREEMPTION_VALUES
    assert cq["spec"]["cohort"] == "podsweep"
    assert cq["spec"]["resourceGroups"][0]["flavors"][0]["resources"][0]["nominalQuota"] == 2
    assert set(lq["spec"]) <= KUEUE_FIELDS["LocalQueue.spec"]
    assert lq["spec"]["clusterQueue"] == cq["metadata"]["name"]
    assert lq["metadata"]["namespace"] == objs["Namespace"]["metadata"]["name"]
    assert cq["spec"]["namespaceSelector"]["matchLabels"] == \
        objs["Namespace"]["metadata"]["labels"]
    # Kueue admits no workload that asks for a resource its queue does not cover
    container = job_object(SPEC, "alice")["spec"]["template"]["spec"]["containers"][0]
    asked = {*container["resources"]["requests"], *container["resources"].get("limits", {})}
    assert asked <= set(cq["spec"]["resourceGroups"][0]["coveredResources"])


@pytest.mark.parametrize("cpus, node_cpus, written, read", [
    # CPU quota 0 is no CPU limit: the nodes' CPUs, lent to no one, so that no job of the
    # project borrows CPUs (Kueue reclaims GPUs only for a job that borrows nothing)
    (0, 16, {"nominalQuota": 16, "lendingLimit": 0}, 0),
    (0, CPU_QUOTA, {"nominalQuota": CPU_QUOTA, "lendingLimit": 0}, 0),
    (4, 16, {"nominalQuota": 4}, 4),        # a CPU quota binds, and is lent while idle
    (32, 16, {"nominalQuota": 32}, 32),
])
def test_a_cpu_quota_of_0_never_binds_and_reads_back_as_0(
        cpus: int, node_cpus: int, written: dict[str, Any], read: int):
    cq = next(o for o in project_objects("team-a", 2, cpus, node_cpus)
              if o["kind"] == "ClusterQueue")
    assert cq["spec"]["resourceGroups"][0]["flavors"][0]["resources"][1] == \
        {"name": "cpu", **written}
    assert cpu_quota(cq) == read
    # as the API server may hand it back
    cpu = cq["spec"]["resourceGroups"][0]["flavors"][0]["resources"][1]
    cpu.update({k: str(v) for k, v in cpu.items() if k != "name"})
    assert cpu_quota(cq) == read


def test_bad_input_for_kubernetes_is_refused():
    with pytest.raises(UsageError, match="pass -i IMAGE"):
        job_object(JobSpec(name="x", project="team-a", command=["true"]), "a")
    with pytest.raises(UsageError, match="too long"):
        project_objects("p" * 60, 1)


def test_podsweep_render_prints_the_job_as_yaml_without_a_cluster(tmp_path: Path):
    podsweep = str(Path(sys.executable).with_name("podsweep"))
    env = {**os.environ, "PODSWEEP_HOME": str(tmp_path), "USER": "alice"}
    out = subprocess.run([podsweep, "render", "hpo1", "-p", "team-a", "-i", "example/train:1",
                          "-g", "1", "--parallelism", "3", "--completions", "12", "--cpu", "2",
                          "-v", "/nfs:/nfs/hpo", "-v", "/data:/data:ro", "-e", "EPOCHS=10",
                          "--working-dir", "/workspace", "--grace-period", "45", "--",
                          "python", "train.py"], capture_output=True, text=True, env=env)
    assert out.returncode == 0, out.stderr
    assert yaml.safe_load(out.stdout) == job_object(SPEC, "alice")
    missing = subprocess.run([podsweep, "render", "x", "-p", "team-a", "--", "true"],
                             capture_output=True, text=True, env=env)
    assert missing.returncode == 2 and "pass -i IMAGE" in missing.stderr
