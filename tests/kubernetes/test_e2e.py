"""The walk-through on a real Kubernetes cluster with Kueue, end to end through the CLI.

Runs only where ``PODSWEEP_E2E_KUBECONFIG`` names a kubeconfig whose cluster has Kueue
installed (kind or minikube will do; see the README). ``PODSWEEP_E2E_IMAGE`` is the image
its pods run (default ``busybox:1.36``, which the nodes must be able to pull) and
``PODSWEEP_E2E_GPUS`` the GPUs per pod (default 0: it runs on a cluster without GPUs).
It creates two projects with a random suffix, and removes their namespaces and Kueue
queues at the end.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest

from tests.control.conftest import ControlPlane

KUBECONFIG = os.environ.get("PODSWEEP_E2E_KUBECONFIG")
IMAGE = os.environ.get("PODSWEEP_E2E_IMAGE", "busybox:1.36")
GPUS = os.environ.get("PODSWEEP_E2E_GPUS", "0")

pytestmark = pytest.mark.skipif(
    not KUBECONFIG, reason="PODSWEEP_E2E_KUBECONFIG does not point at a Kubernetes cluster "
                           "with Kueue (the end-to-end test needs a real one)")


def cleanup(projects: list[str]) -> None:
    from kubernetes import client, config

    api = config.new_client_from_config(config_file=KUBECONFIG)
    custom = client.CustomObjectsApi(api)
    for project in projects:
        for call in (lambda p=project: client.CoreV1Api(api).delete_namespace(f"podsweep-{p}"),
                     lambda p=project: custom.delete_cluster_custom_object(
                         "kueue.x-k8s.io", "v1beta1", "clusterqueues", p)):
            try:
                call()
            except client.exceptions.ApiException as exc:
                if exc.status != 404:
                    raise


@pytest.mark.timeout(900)
def test_the_walkthrough_on_a_real_cluster(tmp_path: Path):
    pytest.importorskip("kubernetes")
    suffix = uuid.uuid4().hex[:6]
    team_a, team_b = f"e2e-{suffix}-a", f"e2e-{suffix}-b"
    plane = ControlPlane(tmp_path / "home")
    plane.env["KUBECONFIG"] = str(KUBECONFIG)
    plane.run("up", "--cluster", "kubernetes")
    try:
        plane.run("project", "create", team_a, "--gpus", "2")
        plane.run("project", "create", team_b, "--gpus", "2")
        names = {p["name"] for p in plane.json("project", "list")}
        assert {team_a, team_b} <= names

        plane.run("submit", "hpo1", "-p", team_a, "-i", IMAGE, "-g", GPUS,
                  "--parallelism", "2", "--completions", "3", "--", "sh", "-c",
                  "echo pod $PODSWEEP_POD_INDEX of $PODSWEEP_JOB_NAME in $PODSWEEP_PROJECT")
        done = plane.until("hpo1 to succeed", lambda: (
            job := plane.job("hpo1", team_a))["job"]["status"] in ("Succeeded", "Failed")
            and job, timeout=600)
        assert done["job"]["status"] == "Succeeded", done
        assert done["job"]["succeeded"] == 3
        indexes = sorted(p["index"] for p in done["pods"] if p["status"] == "Succeeded")
        assert indexes == [0, 1, 2]
        pod = next(p for p in done["pods"] if p["index"] == 1 and p["status"] == "Succeeded")
        out = plane.run("logs", "hpo1", "-p", team_a, "--pod", pod["name"]).stdout
        assert out == f"pod 1 of hpo1 in {team_a}\n"

        plane.run("submit", "sleeper", "-p", team_b, "-i", IMAGE, "-g", GPUS,
                  "--grace-period", "5", "--", "sleep", "600")
        plane.until("sleeper to run", lambda: plane.job("sleeper", team_b)["job"]["running"],
                    timeout=300)
        plane.run("delete", "sleeper", "-p", team_b)
        assert plane.json("list", "-p", team_b) == []
        plane.run("delete", "hpo1", "-p", team_a)
    finally:
        plane.stop()
        cleanup([team_a, team_b])
