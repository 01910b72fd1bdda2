"""The whole path on Kubernetes: ``podsweep up --cluster kubernetes`` (a real control plane
process) with a kubeconfig that points at FakeApiServer (a fake API server in this test's
process), driven through the CLI as a user types it."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.control.conftest import PODSWEEP, ControlPlane

from .fake_apiserver import FakeApiServer

pytest.importorskip("kubernetes")

NS = "podsweep-team-a"


def test_submit_list_get_logs_delete_and_quota_through_the_cli(tmp_path: Path):
    with FakeApiServer() as fake:
        fake.add_node("gpu-node", 4)
        plane = ControlPlane(tmp_path / "home")
        plane.env.pop("KUBECONFIG", None)
        kubeconfig = fake.kubeconfig(tmp_path / "kubeconfig")
        refused = plane.run("up", "--kubeconfig", str(kubeconfig), check=False)
        assert refused.returncode == 2 and "for the kubernetes cluster" in refused.stderr
        up = plane.run("up", "--cluster", "kubernetes", "--kubeconfig", str(kubeconfig),
                       "--context", "fake")
        try:
            assert "on the kubernetes cluster with 4 GPU(s)" in up.stdout
            assert plane.json("status")["cluster"] == "kubernetes"
            plane.run("project", "create", "team-a", "--gpus", "2")
            assert [(p["name"], p["deserved"]) for p in plane.json("project", "list")] == \
                [("team-a", 2)]

            refused = plane.run("submit", "hpo1", "-p", "team-a", "--", "true", check=False)
            assert refused.returncode == 2 and "pass -i IMAGE" in refused.stderr
            submitted = plane.run("submit", "hpo1", "-p", "team-a", "-i", "example/train:1",
                                  "-g", "1", "--parallelism", "2", "--completions", "2",
                                  "-v", "nfs://nfs-1/export:/nfs/hpo", "--", "python",
                                  "train.py")
            # the one line that says the pod will not run where this was typed
            assert submitted.stderr.count("image's working directory") == 1
            detail = plane.job("hpo1", "team-a")
            assert detail["job"]["status"] == "Pending" and detail["job"]["user"] == "admin"
            assert detail["spec"]["volumes"] == ["nfs://nfs-1/export:/nfs/hpo"]
            assert detail["spec"]["working_dir"] is None     # the image's, not the CLI's
            nfs = fake.get("Job", NS, "hpo1")["spec"]["template"]["spec"]["volumes"][0]["nfs"]
            assert nfs == {"server": "nfs-1", "path": "/export", "readOnly": False}

            fake.admit(NS, "hpo1")       # Kueue admits it; the job controller makes pods
            pods = [fake.add_pod(NS, "hpo1", i, node="gpu-node") for i in range(2)]
            fake.write_log(NS, pods[0], "epoch 1\nloss 0.5\n")
            [job] = plane.json("list", "-p", "team-a")
            assert (job["status"], job["running"], job["allocated"]) == ("Running", 2, 2)
            [project] = plane.json("project", "list")
            assert (project["allocated"], project["running"]) == (2, 2)
            held = [g["pod"] for g in plane.json("status")["gpus"]]
            assert sorted(p for p in held if p) == sorted(pods)
            out = plane.run("logs", "hpo1", "-p", "team-a", "--pod", pods[0]).stdout
            assert out == "epoch 1\nloss 0.5\n"
            out = plane.run("logs", "hpo1", "-p", "team-a", "--pod", pods[0], "--tail", "1")
            assert out.stdout == "loss 0.5\n"
            missing = plane.run("logs", "hpo1", "-p", "team-a", "--pod", "hpo1-9-x",
                                check=False)
            assert missing.returncode == 3 and "not a pod of job" in missing.stderr

            # -f streams through the control plane until the pod ends
            fake.write_log(NS, pods[1], "first\n")
            follower = subprocess.Popen([PODSWEEP, "logs", "hpo1", "-p", "team-a", "--pod",
                                         pods[1], "-f"], stdout=subprocess.PIPE, text=True,
                                        env=plane.env)
            try:
                assert follower.stdout is not None
                assert follower.stdout.readline() == "first\n"
                fake.write_log(NS, pods[1], "second\n")
                fake.set_pod(NS, pods[1], "Succeeded")
                rest, _ = follower.communicate(timeout=60)
            finally:
                follower.kill()
            assert rest == "second\n" and follower.returncode == 0

            plane.run("project", "quota", "team-a", "--gpus", "3")
            queue = fake.get("ClusterQueue", None, "team-a")
            assert queue["spec"]["resourceGroups"][0]["flavors"][0]["resources"][0] == \
                {"name": "nvidia.com/gpu", "nominalQuota": 3}

            out = plane.run("delete", "hpo1", "-p", "team-a")
            assert "has been deleted" in out.stdout
            assert fake.all("Pod") == [] and fake.get("Job", NS, "hpo1") is None
            assert plane.json("list", "-p", "team-a") == []
        finally:
            plane.stop()


def test_up_fails_in_one_message_when_the_api_server_is_not_there(tmp_path: Path):
    with FakeApiServer() as fake:
        kubeconfig = fake.kubeconfig(tmp_path / "kubeconfig")
    plane = ControlPlane(tmp_path / "home")       # the fake has stopped: nothing listens
    plane.env["KUBECONFIG"] = str(kubeconfig)
    out = plane.run("up", "--cluster", "kubernetes", check=False)
    try:
        assert out.returncode != 0
        assert "cannot reach the Kubernetes API server" in out.stderr
    finally:
        plane.stop()
