"""``-v`` in its three forms: a host directory everywhere; an NFS export and a
PersistentVolumeClaim on Kubernetes only, refused elsewhere with one line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from podsweep.cluster.kubernetes.objects import job_object
from podsweep.errors import UsageError
from podsweep.model import JobSpec, Volume

kubernetes_validate = pytest.importorskip("kubernetes_validate")

PODSWEEP = str(Path(sys.executable).with_name("podsweep"))


def test_the_three_forms_parse_and_print_back():
    host = Volume.parse("/data/../data:/data:ro")
    assert (host.kind, host.src, host.dst, host.read_only) == ("host", "/data", "/data", True)
    nfs = Volume.parse("nfs://nfs-1.lab.example/export/hpo:/nfs/hpo")
    assert (nfs.kind, nfs.server, nfs.src, nfs.dst, nfs.read_only) == \
        ("nfs", "nfs-1.lab.example", "/export/hpo", "/nfs/hpo", False)
    pvc = Volume.parse("pvc:team-data:/team:ro")
    assert (pvc.kind, pvc.src, pvc.dst, pvc.read_only) == ("pvc", "team-data", "/team", True)
    for volume in (host, nfs, pvc):
        assert Volume.parse(str(volume)) == volume
    spec = JobSpec(name="j", project="p", command=["true"], volumes=[host, nfs, pvc])
    assert JobSpec.from_dict(json.loads(json.dumps(spec.to_dict()))) == spec


@pytest.mark.parametrize("text, message", [
    ("nfs://:/x", "expected nfs://SERVER/EXPORT:DST"),
    ("nfs://server:/x", "expected nfs://SERVER/EXPORT:DST"),
    ("nfs://srv/exp", "expected nfs://SERVER/EXPORT:DST"),
    ("nfs://srv/exp:relative", "target must be an absolute path"),
    ("pvc:/data", "expected pvc:CLAIM:DST"),
    ("pvc:Bad_Claim:/data", "not a claim name"),
    ("pvc:claim:/", "cannot mount over"),
    ("pvc:claim:/data:rx", "expected pvc:CLAIM:DST"),
    ("relative:/data", "source must be an absolute path"),
])
def test_malformed_volumes_are_refused(text: str, message: str):
    with pytest.raises(UsageError, match=message):
        Volume.parse(text)


def test_kubernetes_mounts_each_form_as_its_volume_source():
    spec = JobSpec(name="j", project="p", command=["true"], image="x:1",
                   volumes=[Volume.parse("/scratch:/scratch"),
                            Volume.parse("nfs://10.0.0.5/export:/nfs/hpo"),
                            Volume.parse("pvc:data:/data:ro")])
    job = job_object(spec, "alice")
    kubernetes_validate.validate(job, "1.33.0", strict=True)
    volumes = job["spec"]["template"]["spec"]["volumes"]
    assert volumes == [
        {"name": "vol-0", "hostPath": {"path": "/scratch", "type": "Directory"}},
        {"name": "vol-1", "nfs": {"server": "10.0.0.5", "path": "/export", "readOnly": False}},
        {"name": "vol-2", "persistentVolumeClaim": {"claimName": "data", "readOnly": True}},
    ]
    mounts = job["spec"]["template"]["spec"]["containers"][0]["volumeMounts"]
    assert [(m["name"], m["mountPath"]) for m in mounts] == \
        [("vol-0", "/scratch"), ("vol-1", "/nfs/hpo"), ("vol-2", "/data")]


def test_only_host_directories_elsewhere():
    Volume.parse("/a:/b").require_host("local")
    for text in ("nfs://srv/exp:/nfs", "pvc:data:/data"):
        with pytest.raises(UsageError, match="mounts host directories only"):
            Volume.parse(text).require_host("slurm")


def test_the_local_cluster_refuses_nfs_and_pvc_in_one_line(tmp_path: Path):
    from tests.control.conftest import ControlPlane

    plane = ControlPlane(tmp_path / "home")
    plane.run("up", "--gpus", "0")
    try:
        plane.run("project", "create", "team-a")
        for volume in ("pvc:data:/data", "nfs://srv/export:/nfs"):
            out = plane.run("submit", "j", "-p", "team-a", "-v", volume, "--", "true",
                            check=False)
            assert out.returncode == 2, out
            assert out.stderr.strip().count("\n") == 0
            assert "the local cluster mounts host directories only" in out.stderr
        assert plane.json("list", "-p", "team-a") == []
    finally:
        plane.stop()


def test_submit_help_documents_the_forms():
    env = {**os.environ, "COLUMNS": "200"}
    out = subprocess.run([PODSWEEP, "submit", "--help"], capture_output=True, text=True,
                         env=env)
    assert "nfs://SERVER/EXPORT:DST" in out.stdout and "pvc:CLAIM:DST" in out.stdout
