"""Kubernetes' objects read back as podsweep's views: no client, no cluster needed.

Pods map to podsweep's statuses: ``Pending`` (not started yet), ``Running``, ``Terminating``
(deletion under way), ``Succeeded``, ``Failed``, and ``Preempted`` (ended with a
``DisruptionTarget`` condition: Kueue's preemption, an eviction; the Job's
``podFailurePolicy`` does not count it as a failure and the index runs again). A Job is read
by its conditions and its own pods, a Kueue Workload's conditions become the job's events, a
ClusterQueue gives a project's quotas, the nodes and their pods the GPUs and who holds them.

Every function takes the JSON the API server sends, as plain dicts, and calls nothing: the
engine (:mod:`.cluster`) fetches, these read.
"""

from __future__ import annotations

import dataclasses
import json
import re
from datetime import datetime
from decimal import Decimal
from typing import Any

from ...errors import PodsweepError, UsageError
from ...model import JobSpec, JobStatus, PodStatus, check_name
from ..base import EventInfo, JobDetail, JobInfo, PodInfo, ProjectInfo
from .objects import CPU_QUOTA, GPU, PROJECT_LABEL, SPEC_ANNOTATION, USER_LABEL

CONTROLLER_UID = ("batch.kubernetes.io/controller-uid", "controller-uid")
INDEX_ANNOTATION = "batch.kubernetes.io/job-completion-index"
PENDING, UNKNOWN = "Pending", "Unknown"
STARTING = {PENDING, UNKNOWN}     # not running yet, or a node that stopped reporting


def timestamp(stamp: Any) -> float | None:
    if not stamp:
        return None
    return datetime.fromisoformat(str(stamp).replace("Z", "+00:00")).timestamp()


_SUFFIXES = {"m": Decimal("0.001"), "": Decimal(1), "k": Decimal(10) ** 3,
             "M": Decimal(10) ** 6, "G": Decimal(10) ** 9, "T": Decimal(10) ** 12,
             "P": Decimal(10) ** 15, "E": Decimal(10) ** 18, "Ki": Decimal(2) ** 10,
             "Mi": Decimal(2) ** 20, "Gi": Decimal(2) ** 30, "Ti": Decimal(2) ** 40,
             "Pi": Decimal(2) ** 50, "Ei": Decimal(2) ** 60}
_QUANTITY = re.compile(r"([+-]?[0-9.]+(?:[eE][+-]?[0-9]+)?)(m|k|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei)?")


def quantity(value: Any) -> int:
    """The whole units of a Kubernetes quantity (``16``, ``15500m``, ``100k``, ``1Gi``);
    0 if it is none. The API server may hand back a quantity in another form than it was
    given (``100000`` as ``100k``)."""
    match = _QUANTITY.fullmatch(str(value).strip())
    if match is None:
        return 0
    try:
        number = Decimal(match[1]) * _SUFFIXES[match[2] or ""]
    except ArithmeticError:
        return 0
    return int(number)      # towards zero: 15500m is 15 whole CPUs


def valid_name(name: str) -> bool:
    try:
        check_name("name", name)
        return True
    except UsageError:
        return False


# ------------------------------------------------------------ pods


def owner(pod: dict[str, Any]) -> str | None:
    """The uid of the Job that owns a pod."""
    for ref in pod["metadata"].get("ownerReferences") or []:
        if ref.get("kind") == "Job" and ref.get("controller"):
            return str(ref["uid"])
    labels = pod["metadata"].get("labels") or {}
    for key in CONTROLLER_UID:
        if key in labels:
            return str(labels[key])
    return None


def condition(obj: dict[str, Any], kind: str) -> dict[str, Any] | None:
    for cond in (obj.get("status") or {}).get("conditions") or []:
        if cond.get("type") == kind and cond.get("status") == "True":
            return dict(cond)
    return None


def pod_status(pod: dict[str, Any]) -> tuple[str, str | None]:
    """podsweep's status of a pod, and why it ended (or why it waits)."""
    phase = (pod.get("status") or {}).get("phase") or PENDING
    disruption = condition(pod, "DisruptionTarget")
    ended = terminated(pod)
    if phase in (PodStatus.SUCCEEDED.value, PodStatus.FAILED.value):
        if phase == PodStatus.FAILED.value and disruption is not None:
            return PodStatus.PREEMPTED.value, \
                disruption.get("message") or disruption.get("reason") or "preempted"
        if phase == PodStatus.FAILED.value:
            reason = (ended or {}).get("reason") or \
                (pod.get("status") or {}).get("reason")
            code = (ended or {}).get("exitCode")
            return phase, reason or (f"exit code {code}" if code is not None else None)
        return phase, None
    if pod["metadata"].get("deletionTimestamp"):
        return PodStatus.TERMINATING.value, \
            (disruption or {}).get("reason") or "deleted"
    if phase == PodStatus.RUNNING.value:
        return phase, None
    if phase == PENDING:
        for status in (pod.get("status") or {}).get("containerStatuses") or []:
            waiting = (status.get("state") or {}).get("waiting")
            if waiting and waiting.get("reason"):
                return PENDING, str(waiting["reason"])
        return PENDING, None
    return UNKNOWN, (pod.get("status") or {}).get("reason")


def started(pod: dict[str, Any]) -> float | None:
    """When the pod's container started (running, or ended having run); None if never."""
    for status in (pod.get("status") or {}).get("containerStatuses") or []:
        state = status.get("state") or {}
        for kind in ("running", "terminated"):
            at = timestamp((state.get(kind) or {}).get("startedAt"))
            if at is not None:
                return at
    return None


def terminated(pod: dict[str, Any]) -> dict[str, Any] | None:
    for status in (pod.get("status") or {}).get("containerStatuses") or []:
        ended = (status.get("state") or {}).get("terminated")
        if ended:
            return dict(ended)
    return None


def completion_index(pod: dict[str, Any]) -> int:
    meta = pod["metadata"]
    value = (meta.get("annotations") or {}).get(INDEX_ANNOTATION) or \
        (meta.get("labels") or {}).get(INDEX_ANNOTATION) or "0"
    return quantity(value)


def pod_infos(pods: list[dict[str, Any]]) -> list[PodInfo]:
    """Pods in the order they were created; an index's attempts numbered from 0."""
    ordered = sorted(pods, key=lambda p: (p["metadata"].get("creationTimestamp") or "",
                                          p["metadata"]["name"]))
    attempts: dict[int, int] = {}
    out = []
    for pod in ordered:
        index = completion_index(pod)
        attempt = attempts[index] = attempts.get(index, -1) + 1
        status, reason = pod_status(pod)
        ended = terminated(pod) or {}
        out.append(PodInfo(pod["metadata"]["name"], index, attempt, status, [],
                           timestamp(pod["metadata"].get("creationTimestamp")) or 0.0,
                           timestamp(ended.get("finishedAt")),
                           ended.get("exitCode"), reason))
    return out


def pods_left(pods: list[dict[str, Any]], uid: str) -> list[str]:
    """The pods of the Job ``uid`` that run, or may yet: what a delete waits for."""
    return [p["metadata"]["name"] for p in pods if owner(p) == uid and
            pod_status(p)[0] in (PodStatus.RUNNING.value, PodStatus.TERMINATING.value,
                                 *STARTING)]


def pod_gpus(pod: dict[str, Any]) -> int:
    return sum(quantity(((c.get("resources") or {}).get("limits") or {}).get(GPU, 0))
               for c in (pod.get("spec") or {}).get("containers") or [])


def node_gpus(nodes: list[dict[str, Any]], pods: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One entry per GPU the nodes offer, with a pod that holds GPUs on its node."""
    holders: dict[str, list[tuple[str, str | None]]] = {}    # node -> (pod, project)
    for pod in pods:
        node = (pod.get("spec") or {}).get("nodeName")
        if node and pod_status(pod)[0] in (PodStatus.RUNNING.value,
                                           PodStatus.TERMINATING.value):
            meta = pod["metadata"]
            project = (meta.get("labels") or {}).get(PROJECT_LABEL)
            holders.setdefault(node, []).extend([(meta["name"], project)] * pod_gpus(pod))
    gpus: list[dict[str, Any]] = []
    for node in sorted(nodes, key=lambda n: n["metadata"]["name"]):
        name = node["metadata"]["name"]
        count = quantity(((node.get("status") or {}).get("allocatable") or {}).get(GPU, 0))
        held = holders.get(name, [])
        for i in range(count):
            holder, project = held[i] if i < len(held) else (None, None)
            gpus.append({"index": len(gpus), "name": f"{name}/{i}", "pod": holder,
                         "project": project})
    return gpus


# ------------------------------------------------------------ jobs


def job_spec(job: dict[str, Any]) -> JobSpec | None:
    """The spec a job was submitted with (the annotation podsweep wrote)."""
    text = (job["metadata"].get("annotations") or {}).get(SPEC_ANNOTATION)
    if not text:
        return None
    try:
        return JobSpec.from_dict(json.loads(text))
    except (ValueError, TypeError, PodsweepError):
        return None


def job_info(job: dict[str, Any], pods: list[dict[str, Any]]) -> JobInfo:
    """podsweep's view of a Job and its pods (the pods of that very Job)."""
    meta, status = job["metadata"], job.get("status") or {}
    spec = job_spec(job)
    kspec = job.get("spec") or {}
    gpus = spec.whole_gpus("Kubernetes") if spec else 0     # never a share: job_object
    parallelism = int(kspec.get("parallelism", 1))
    completions = int(kspec.get("completions", 1))
    statuses = [pod_status(p)[0] for p in pods]
    running = sum(s in (PodStatus.RUNNING.value, PodStatus.TERMINATING.value)
                  for s in statuses)
    succeeded = int(status.get("succeeded") or 0)
    failed = int(status.get("failed") or 0)
    complete, failure = condition(job, "Complete"), condition(job, "Failed")
    message = None
    finished = None
    if meta.get("deletionTimestamp"):
        state = JobStatus.DELETED
        finished = timestamp(meta["deletionTimestamp"])
    elif complete is not None:
        state = JobStatus.SUCCEEDED
        finished = timestamp(status.get("completionTime") or
                             complete.get("lastTransitionTime"))
        message = f"{succeeded} pods succeeded"
    elif failure is not None:
        state = JobStatus.FAILED
        finished = timestamp(failure.get("lastTransitionTime"))
        message = failed_message(job, failure)
    else:
        state = JobStatus.RUNNING if running else JobStatus.PENDING
        if kspec.get("suspend"):
            message = "waiting for Kueue to admit it (the project's quota or the cohort's " \
                      "idle GPUs)"
    pending = 0 if state.done else \
        max(0, min(parallelism - running, completions - succeeded - running))
    command = spec.command if spec else \
        list(((kspec.get("template") or {}).get("spec") or {})
             .get("containers", [{}])[0].get("command") or [])
    hpo_dirs = [v.src for v in spec.volumes if v.kind == "host"] if spec else []
    return JobInfo(meta.get("uid", ""), meta["name"],
                   (meta.get("labels") or {}).get(PROJECT_LABEL, ""),
                   (meta.get("labels") or {}).get(USER_LABEL, ""), state.value,
                   timestamp(meta.get("creationTimestamp")) or 0.0, finished, gpus,
                   parallelism, completions, succeeded, failed, running, pending,
                   gpus * running, gpus * (running + pending), list(command), message,
                   hpo_dirs)


def failed_message(job: dict[str, Any], failure: dict[str, Any]) -> str | None:
    """Why a Job failed; the backoff limit in the words the other clusters use."""
    if failure.get("reason") == "BackoffLimitExceeded":
        failed = int((job.get("status") or {}).get("failed") or 0)
        limit = (job.get("spec") or {}).get("backoffLimit", 6)     # the API's default
        return f"{failed} pods failed (backoff limit {limit})"
    return failure.get("message") or failure.get("reason")


def job_infos(jobs: list[dict[str, Any]], pods: list[dict[str, Any]]) -> list[JobInfo]:
    """Jobs, each with its own pods (of all ``pods``), the oldest first."""
    by_owner: dict[str, list[dict[str, Any]]] = {}
    for pod in pods:
        by_owner.setdefault(owner(pod) or "", []).append(pod)
    infos = [job_info(j, by_owner.get(j["metadata"].get("uid", ""), [])) for j in jobs]
    return sorted(infos, key=lambda j: (j.created, j.project, j.name))


def job_detail(job: dict[str, Any], pods: list[dict[str, Any]],
               conditions: list[dict[str, Any]]) -> JobDetail:
    """A Job with its own pods and the conditions of its Kueue Workload: its pods, and its
    events from the Workload's conditions (but Finished, which repeats the Job's own), its
    pods' creations, starts and ends and its own conditions."""
    infos = pod_infos(pods)
    events = [EventInfo(timestamp(c.get("lastTransitionTime")) or 0.0,
                        f"Kueue {c.get('type')}" +
                        ("" if c.get("status") == "True" else " (no)"),
                        str(c.get("message") or c.get("reason") or ""))
              for c in conditions if c.get("type") != "Finished"]
    nodes = {p["metadata"]["name"]: (p.get("spec") or {}).get("nodeName") for p in pods}
    starts = {p["metadata"]["name"]: started(p) for p in pods}
    for pod in infos:
        events.append(EventInfo(pod.created, "Created", f"pod {pod.name}"))
        start = starts.get(pod.name)
        if start is not None:
            where = f" on {nodes[pod.name]}" if nodes.get(pod.name) else ""
            events.append(EventInfo(start, "Started", f"pod {pod.name}{where}"))
        if pod.finished is not None and pod.status != PodStatus.RUNNING.value:
            why = f": {pod.reason}" if pod.reason else ""
            events.append(EventInfo(pod.finished, pod.status, f"pod {pod.name}{why}"))
    for cond in (job.get("status") or {}).get("conditions") or []:
        if cond.get("status") == "True":
            message = failed_message(job, cond) if cond.get("type") == "Failed" else \
                cond.get("message") or cond.get("reason")
            events.append(EventInfo(timestamp(cond.get("lastTransitionTime")) or 0.0,
                                    str(cond.get("type")), str(message or "")))
    spec = job_spec(job)
    info = job_info(job, pods)
    waiting = next((c for c in conditions if c.get("type") == "QuotaReserved" and
                    c.get("status") == "False" and c.get("message")), None)
    if waiting is not None and (job.get("spec") or {}).get("suspend"):
        info = dataclasses.replace(info, message=f"waiting for Kueue: {waiting['message']}")
    return JobDetail(info, infos, sorted(events, key=lambda e: e.time),
                     spec.to_dict() if spec else {})


# ------------------------------------------------------------ projects


def resource_quota(queue: dict[str, Any], name: str) -> dict[str, Any]:
    """A ClusterQueue's quota of one resource (``nominalQuota`` and the limits), or {}."""
    for group in (queue.get("spec") or {}).get("resourceGroups") or []:
        for flavor in group.get("flavors") or []:
            for resource in flavor.get("resources") or []:
                if resource.get("name") == name:
                    return dict(resource)
    return {}


def nominal(queue: dict[str, Any], name: str) -> int:
    """A ClusterQueue's nominal quota of a resource (GPUs or whole CPUs)."""
    return quantity(resource_quota(queue, name).get("nominalQuota", 0))


def cpu_quota(queue: dict[str, Any]) -> int:
    """A project's CPU quota, from its ClusterQueue: 0 where its ``cpu`` quota is lent to
    no one (CPU quota 0, a quota that never binds) or is that of the queues made before
    CPU quotas bound, :data:`~.objects.CPU_QUOTA`."""
    cpu = resource_quota(queue, "cpu")
    if "lendingLimit" in cpu:
        return 0
    cpus = quantity(cpu.get("nominalQuota", 0))
    return 0 if cpus == CPU_QUOTA else cpus


def project_infos(names: list[str], quotas: dict[str, tuple[int, int]],
                  jobs: list[JobInfo]) -> list[ProjectInfo]:
    """The projects ``names``, with their (GPU, CPU) quotas and what their jobs hold."""
    out = []
    for name in names:
        mine = [j for j in jobs if j.project == name]
        deserved, cpus = quotas.get(name, (0, 0))
        out.append(ProjectInfo(name, deserved, sum(j.allocated for j in mine),
                               sum(j.running for j in mine),
                               sum(j.pending for j in mine),
                               # Kueue guarantees the nominal quota; what it lends
                               # out idle is not a share podsweep computes
                               float(deserved), cpus=cpus, cpu_share=float(cpus)))
    return out
