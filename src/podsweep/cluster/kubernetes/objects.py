"""The Kubernetes objects podsweep creates, as plain dicts: no client, no cluster needed.

- A **project** is a namespace (``podsweep-<project>``) with a Kueue LocalQueue, bound to a
  ClusterQueue whose nominal quotas of ``nvidia.com/gpu`` and ``cpu`` are the project's
  GPUs and CPUs. Every ClusterQueue is in one cohort, so idle quota is borrowed and
  reclaimed (``reclaimWithinCohort``): the walk-through's over-quota use and preemption.
- A project with **CPU quota 0** (the default: no CPU limit, as on Slurm) gets a ``cpu``
  nominal quota that never binds, the nodes' allocatable CPUs, with a ``lendingLimit`` of 0
  so that the cohort is lent none of it. Its jobs then never borrow CPUs, and so Kueue
  reclaims GPUs for them: it reclaims within the cohort only for a workload within its
  queue's nominal quota in every resource it asks (no ``borrowWithinCohort``). Not
  counting ``cpu`` for it is no way out: Kueue admits no workload that asks a resource its
  queue does not cover. The ``lendingLimit`` of 0 is also how a queue says its project's
  CPU quota is 0 (:func:`.views.cpu_quota`).
- The **idle CPUs and GPUs** are one more ClusterQueue of the cohort, :data:`IDLE_QUEUE`,
  whose ``cpu`` and ``nvidia.com/gpu`` quotas are the nodes' CPUs and GPUs that no project
  has as quota (Kueue lends only quota: without it a job over its project's quota would
  wait on idle GPUs that no project holds). No LocalQueue points to it and it
  selects no namespace, so it admits nothing: it only lends, to the projects over their
  quota, and a project within its quota takes back what was lent by preemption.
- A **job** is a batch/v1 Job: ``completionMode: Indexed``, ``parallelism``,
  ``completions``, ``restartPolicy: Never``, GPU limits, the image and command, the volumes,
  the ``PODSWEEP_*`` variables (from the pod's own metadata where Kubernetes knows them),
  ``backoffLimit``, and a ``podFailurePolicy`` that ignores ``DisruptionTarget`` so that a
  preemption never counts as a failure. It is created suspended: Kueue admits it. Volumes
  are hostPath (``-v SRC:DST``), NFS (``-v nfs://SERVER/EXPORT:DST``) or a
  PersistentVolumeClaim (``-v pvc:CLAIM:DST``). What podsweep needs back (the submitting
  user, the spec as submitted) is kept on the Job itself: a label and an annotation.

``podsweep render`` prints these for review; :mod:`podsweep.cluster.kubernetes.cluster`
creates them through the official client.
"""

from __future__ import annotations

import json
from typing import Any

from ...errors import UsageError
from ...model import JobSpec, Volume

KUEUE_API = "kueue.x-k8s.io/v1beta1"
COHORT = "podsweep"
FLAVOR = "default-flavor"
GPU = "nvidia.com/gpu"
CPU_QUOTA = 100_000
"""The CPUs where the nodes cannot be read (the idle queue's, and a project's with CPU quota
0): then they are without bound. Also the ``cpu`` quota of queues made before CPU quotas
bound, which means quota 0."""
IDLE_QUEUE = "podsweep-idle-cpus"
ROLE_LABEL = "podsweep.io/role"
NAMESPACE_PREFIX = "podsweep-"
PROJECT_LABEL = "podsweep.io/project"
JOB_LABEL = "podsweep.io/job"
QUEUE_LABEL = "kueue.x-k8s.io/queue-name"
USER_LABEL = "podsweep.io/user"
SPEC_ANNOTATION = "podsweep.io/spec"


def namespace(project: str) -> str:
    name = NAMESPACE_PREFIX + project
    if len(name) > 63:
        raise UsageError(f"project name {project!r} is too long for Kubernetes: at most "
                         f"{63 - len(NAMESPACE_PREFIX)} characters")
    return name


def _resource_groups(gpus: int, cpus: int,
                     unbound: int | None = None) -> list[dict[str, Any]]:
    """One group of GPUs and CPUs; with ``unbound``, CPU quota 0 as a ``cpu`` quota of
    ``unbound`` that the queue lends no one."""
    cpu: dict[str, Any] = {"name": "cpu", "nominalQuota": cpus}
    if unbound is not None and not cpus:
        cpu = {"name": "cpu", "nominalQuota": unbound, "lendingLimit": 0}
    # Kueue admits no workload that requests a resource its queue does not cover
    # ("resource cpu unavailable in ClusterQueue"), and every pod requests CPUs
    return [{"coveredResources": [GPU, "cpu"],
             "flavors": [{"name": FLAVOR,
                          "resources": [{"name": GPU, "nominalQuota": gpus}, cpu]}]}]


def idle_queue(cpus: int, gpus: int = 0) -> dict[str, Any]:
    """The ClusterQueue that lends the cohort the CPUs and GPUs no project has as quota
    (named for the CPUs, which it lent first)."""
    return {"apiVersion": KUEUE_API, "kind": "ClusterQueue",
            "metadata": {"name": IDLE_QUEUE, "labels": {ROLE_LABEL: "idle-cpus"}},
            # no namespaceSelector (Kueue: no namespace) and no LocalQueue: it admits nothing
            "spec": {"cohort": COHORT, "resourceGroups": _resource_groups(gpus, cpus)}}


def project_objects(project: str, gpus: int, cpus: int = 0,
                    node_cpus: int = CPU_QUOTA) -> list[dict[str, Any]]:
    """Namespace, ResourceFlavor, ClusterQueue and LocalQueue of one project; with CPU
    quota 0, its ``cpu`` quota is ``node_cpus`` (the nodes' allocatable CPUs), lent to no
    one."""
    ns = namespace(project)
    return [
        {"apiVersion": "v1", "kind": "Namespace",
         "metadata": {"name": ns, "labels": {PROJECT_LABEL: project}}},
        {"apiVersion": KUEUE_API, "kind": "ResourceFlavor", "metadata": {"name": FLAVOR}},
        {"apiVersion": KUEUE_API, "kind": "ClusterQueue",
         "metadata": {"name": project, "labels": {PROJECT_LABEL: project}},
         "spec": {
             "cohort": COHORT,
             "namespaceSelector": {"matchLabels": {PROJECT_LABEL: project}},
             "resourceGroups": _resource_groups(gpus, cpus, node_cpus),
             # borrow idle GPUs and CPUs of the cohort; take lent ones back by preemption
             "preemption": {"reclaimWithinCohort": "Any",
                            "withinClusterQueue": "LowerPriority"},
         }},
        {"apiVersion": KUEUE_API, "kind": "LocalQueue",
         "metadata": {"name": project, "namespace": ns},
         "spec": {"clusterQueue": project}},
    ]


def _field(path: str) -> dict[str, Any]:
    return {"valueFrom": {"fieldRef": {"fieldPath": path}}}


def volume_source(volume: Volume) -> dict[str, Any]:
    """The pod's volume for ``-v``: a host directory, an NFS export or a claim."""
    if volume.kind == "nfs":
        return {"nfs": {"server": volume.server, "path": volume.src,
                        "readOnly": volume.read_only}}
    if volume.kind == "pvc":
        return {"persistentVolumeClaim": {"claimName": volume.src,
                                          "readOnly": volume.read_only}}
    return {"hostPath": {"path": volume.src, "type": "Directory"}}


def job_object(spec: JobSpec, user: str) -> dict[str, Any]:
    """The batch/v1 Job for ``spec``, queued in its project's LocalQueue."""
    gpus = spec.whole_gpus("Kubernetes")
    if not spec.image:
        raise UsageError("Kubernetes runs pods from an image: pass -i IMAGE")
    labels = {PROJECT_LABEL: spec.project, JOB_LABEL: spec.name, QUEUE_LABEL: spec.project,
              USER_LABEL: user}
    env: list[dict[str, Any]] = [{"name": k, "value": v} for k, v in spec.env.items()]
    env += [
        {"name": "PODSWEEP_JOB_NAME", "value": spec.name},
        {"name": "PODSWEEP_PROJECT", "value": spec.project},
        {"name": "PODSWEEP_JOB_UID",
         **_field("metadata.labels['batch.kubernetes.io/controller-uid']")},
        {"name": "PODSWEEP_POD_NAME", **_field("metadata.name")},
        {"name": "PODSWEEP_POD_INDEX",
         **_field("metadata.annotations['batch.kubernetes.io/job-completion-index']")},
        {"name": "OMP_NUM_THREADS", "value": str(spec.cpu)},
    ]
    resources: dict[str, Any] = {"requests": {"cpu": str(spec.cpu)}}
    if gpus:
        resources["limits"] = {GPU: str(gpus)}
    container: dict[str, Any] = {
        "name": "main", "image": spec.image, "command": list(spec.command), "env": env,
        "resources": resources,
        "volumeMounts": [{"name": f"vol-{i}", "mountPath": v.dst, "readOnly": v.read_only}
                         for i, v in enumerate(spec.volumes)],
    }
    if spec.working_dir:
        container["workingDir"] = spec.working_dir
    return {
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": spec.name, "namespace": namespace(spec.project),
                     "labels": labels,
                     "annotations": {SPEC_ANNOTATION: json.dumps(spec.to_dict(),
                                                                 sort_keys=True)}},
        "spec": {
            "completionMode": "Indexed",
            "completions": spec.completions,
            "parallelism": spec.parallelism,
            "backoffLimit": spec.backoff_limit,
            "suspend": True,
            # a pod evicted by a preemption is not a failure: its index runs again
            "podFailurePolicy": {"rules": [{
                "action": "Ignore",
                "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}],
            }]},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "restartPolicy": "Never",
                    "terminationGracePeriodSeconds": int(spec.grace_period),
                    "containers": [container],
                    "volumes": [{"name": f"vol-{i}", **volume_source(v)}
                                for i, v in enumerate(spec.volumes)],
                },
            },
        },
    }
