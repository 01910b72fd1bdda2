"""The Kubernetes cluster: jobs as Indexed batch/v1 Jobs, queued and preempted by Kueue.

Kubernetes holds all the state: a project is a namespace with its Kueue queues, a job is a
Job (its user a label, its spec as submitted an annotation), a pod is a pod. Nothing goes
into podsweep's store; every view is read from the API server when asked for, through the
official ``kubernetes`` client (an optional extra, imported when this cluster is opened).

The objects are those :mod:`podsweep.cluster.kubernetes_objects` renders. Pods map to
podsweep's statuses: ``Pending`` (not started yet), ``Running``, ``Terminating`` (deletion
under way), ``Succeeded``, ``Failed``, and ``Preempted`` (ended with a ``DisruptionTarget``
condition: Kueue's preemption, an eviction; the Job's ``podFailurePolicy`` does not count it
as a failure and the index runs again).

The protocol's views are synchronous and run on the server's event loop: each is a few API
calls with a short timeout (:data:`REQUEST_TIMEOUT`), so an unreachable API server stalls
the loop for seconds at most and the request fails with one line. What waits for long (a
delete's wait for its pods, a log that follows a pod) runs in worker threads.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import dataclasses
import json
import logging
import os
import re
from collections.abc import AsyncIterator, Callable
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from ..errors import Conflict, Forbidden, NotFound, PodsweepError, Unavailable, UsageError
from ..model import JobSpec, JobStatus, PodStatus, check_count, check_name
from ..store import Store
from .base import (
    ClusterInfo,
    EventInfo,
    JobDetail,
    JobInfo,
    PodInfo,
    ProjectInfo,
)
from .kubernetes_objects import (
    CPU_QUOTA,
    GPU,
    IDLE_QUEUE,
    JOB_LABEL,
    KUEUE_API,
    PROJECT_LABEL,
    SPEC_ANNOTATION,
    USER_LABEL,
    idle_queue,
    job_object,
    namespace,
    project_objects,
)

log = logging.getLogger("podsweep.cluster.kubernetes")

REQUEST_TIMEOUT = (3.0, 10.0)
"""Seconds to connect and to read, for every call made on the event loop."""

FOLLOW_TIMEOUT = (3.0, 24 * 3600.0)
"""A followed log may be silent for long (a training epoch): only a day of silence ends it."""

DELETE_POLL = 0.2
"""How often a delete looks whether its pods have gone (in a worker thread)."""

DELETE_SLACK = 120.0
"""How long past the job's grace period a delete waits for pods a node never reports gone."""

LOG_CHUNK = 1 << 16
KUEUE_GROUP, _, KUEUE_VERSION = KUEUE_API.partition("/")
CONTROLLER_UID = ("batch.kubernetes.io/controller-uid", "controller-uid")
INDEX_ANNOTATION = "batch.kubernetes.io/job-completion-index"
WORKLOAD_JOB_UID = "kueue.x-k8s.io/job-uid"     # Kueue's label on a Job's Workload
PENDING, UNKNOWN = "Pending", "Unknown"
STARTING = {PENDING, UNKNOWN}     # not running yet, or a node that stopped reporting


def _time(stamp: Any) -> float | None:
    if not stamp:
        return None
    return datetime.fromisoformat(str(stamp).replace("Z", "+00:00")).timestamp()


_SUFFIXES = {"m": Decimal("0.001"), "": Decimal(1), "k": Decimal(10) ** 3,
             "M": Decimal(10) ** 6, "G": Decimal(10) ** 9, "T": Decimal(10) ** 12,
             "P": Decimal(10) ** 15, "E": Decimal(10) ** 18, "Ki": Decimal(2) ** 10,
             "Mi": Decimal(2) ** 20, "Gi": Decimal(2) ** 30, "Ti": Decimal(2) ** 40,
             "Pi": Decimal(2) ** 50, "Ei": Decimal(2) ** 60}
_QUANTITY = re.compile(r"([+-]?[0-9.]+(?:[eE][+-]?[0-9]+)?)(m|k|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei)?")


def _quantity(value: Any) -> int:
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



def _owner(pod: dict[str, Any]) -> str | None:
    """The uid of the Job that owns a pod."""
    for ref in pod["metadata"].get("ownerReferences") or []:
        if ref.get("kind") == "Job" and ref.get("controller"):
            return str(ref["uid"])
    labels = pod["metadata"].get("labels") or {}
    for key in CONTROLLER_UID:
        if key in labels:
            return str(labels[key])
    return None


def _condition(obj: dict[str, Any], kind: str) -> dict[str, Any] | None:
    for cond in (obj.get("status") or {}).get("conditions") or []:
        if cond.get("type") == kind and cond.get("status") == "True":
            return dict(cond)
    return None


def pod_status(pod: dict[str, Any]) -> tuple[str, str | None]:
    """podsweep's status of a pod, and why it ended (or why it waits)."""
    phase = (pod.get("status") or {}).get("phase") or PENDING
    disruption = _condition(pod, "DisruptionTarget")
    terminated = _terminated(pod)
    if phase in (PodStatus.SUCCEEDED.value, PodStatus.FAILED.value):
        if phase == PodStatus.FAILED.value and disruption is not None:
            return PodStatus.PREEMPTED.value, \
                disruption.get("message") or disruption.get("reason") or "preempted"
        if phase == PodStatus.FAILED.value:
            reason = (terminated or {}).get("reason") or \
                (pod.get("status") or {}).get("reason")
            code = (terminated or {}).get("exitCode")
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


def _terminated(pod: dict[str, Any]) -> dict[str, Any] | None:
    for status in (pod.get("status") or {}).get("containerStatuses") or []:
        terminated = (status.get("state") or {}).get("terminated")
        if terminated:
            return dict(terminated)
    return None


def _index(pod: dict[str, Any]) -> int:
    meta = pod["metadata"]
    value = (meta.get("annotations") or {}).get(INDEX_ANNOTATION) or \
        (meta.get("labels") or {}).get(INDEX_ANNOTATION) or "0"
    return _quantity(value)


def pod_infos(pods: list[dict[str, Any]]) -> list[PodInfo]:
    """Pods in the order they were created; an index's attempts numbered from 0."""
    ordered = sorted(pods, key=lambda p: (p["metadata"].get("creationTimestamp") or "",
                                          p["metadata"]["name"]))
    attempts: dict[int, int] = {}
    out = []
    for pod in ordered:
        index = _index(pod)
        attempt = attempts[index] = attempts.get(index, -1) + 1
        status, reason = pod_status(pod)
        terminated = _terminated(pod) or {}
        out.append(PodInfo(pod["metadata"]["name"], index, attempt, status, [],
                           _time(pod["metadata"].get("creationTimestamp")) or 0.0,
                           _time(terminated.get("finishedAt")),
                           terminated.get("exitCode"), reason))
    return out


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
    gpus = spec.gpus if spec else 0
    parallelism = int(kspec.get("parallelism", 1))
    completions = int(kspec.get("completions", 1))
    statuses = [pod_status(p)[0] for p in pods]
    running = sum(s in (PodStatus.RUNNING.value, PodStatus.TERMINATING.value)
                  for s in statuses)
    succeeded = int(status.get("succeeded") or 0)
    failed = int(status.get("failed") or 0)
    complete, failure = _condition(job, "Complete"), _condition(job, "Failed")
    message = None
    finished = None
    if meta.get("deletionTimestamp"):
        state = JobStatus.DELETED
        finished = _time(meta["deletionTimestamp"])
    elif complete is not None:
        state = JobStatus.SUCCEEDED
        finished = _time(status.get("completionTime") or complete.get("lastTransitionTime"))
        message = f"{succeeded} pods succeeded"
    elif failure is not None:
        state = JobStatus.FAILED
        finished = _time(failure.get("lastTransitionTime"))
        message = failure.get("message") or failure.get("reason")
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
                   _time(meta.get("creationTimestamp")) or 0.0, finished, gpus, parallelism,
                   completions, succeeded, failed, running, pending, gpus * running,
                   gpus * (running + pending), list(command), message, hpo_dirs)


class KubernetesCluster:
    """Projects, jobs and pods in a Kubernetes cluster with Kueue; see the module docstring."""

    kind = "kubernetes"

    def __init__(self, api_client: Any, loop: asyncio.AbstractEventLoop) -> None:
        from kubernetes import client

        self.api = api_client
        self.loop = loop
        self.core = client.CoreV1Api(api_client)
        self.batch = client.BatchV1Api(api_client)
        self.custom = client.CustomObjectsApi(api_client)
        self._pool = concurrent.futures.ThreadPoolExecutor(
            max_workers=64, thread_name_prefix="podsweep-kubernetes")
        self._streams: set[Any] = set()     # open log responses, closed on shutdown

    @classmethod
    def open(cls, home: Path, store: Store, loop: asyncio.AbstractEventLoop,
             settings: dict[str, Any]) -> KubernetesCluster:
        """The cluster of ``settings["kubeconfig"]`` (else ``$KUBECONFIG``, else
        ``~/.kube/config``, else the pod's service account), at ``settings["context"]``."""
        try:
            from kubernetes import client, config
        except ImportError as exc:
            raise UsageError("the kubernetes cluster needs the official client: "
                             "pip install 'podsweep[kubernetes]'") from exc
        configuration = client.Configuration()
        path = settings.get("kubeconfig") or None
        try:
            if path is None and "KUBERNETES_SERVICE_HOST" in os.environ and \
                    not os.environ.get("KUBECONFIG") and \
                    not Path("~/.kube/config").expanduser().exists():
                config.load_incluster_config(client_configuration=configuration)
            else:
                config.load_kube_config(config_file=path, context=settings.get("context"),
                                        client_configuration=configuration)
        except config.ConfigException as exc:
            raise UsageError(f"cannot use the kubeconfig {path or '(default)'}: "
                             f"{exc}") from exc
        configuration.retries = 1        # fail in seconds when the API server is away
        return cls(client.ApiClient(configuration), loop)

    # ------------------------------------------------------------ calls

    def _call(self, what: str, fn: Callable[..., Any], *args: Any,
              timeout: tuple[float, float] = REQUEST_TIMEOUT, **kwargs: Any) -> Any:
        """One API call; its JSON answer as plain data, its failure as podsweep's error."""
        from kubernetes.client.exceptions import ApiException

        try:
            response = fn(*args, _preload_content=False, _request_timeout=timeout, **kwargs)
        except ApiException as exc:
            raise _error(what, exc) from exc
        except OSError as exc:
            raise Unavailable(f"cannot reach the Kubernetes API server to {what}: "
                              f"{exc}") from exc
        except Exception as exc:    # urllib3's errors are not OSErrors
            if type(exc).__module__.startswith("urllib3"):
                raise Unavailable(f"cannot reach the Kubernetes API server to {what}: "
                                  f"{exc}") from exc
            raise
        data = response.data
        return json.loads(data) if data else {}

    async def _in_thread(self, fn: Callable[..., Any], *args: Any) -> Any:
        return await self.loop.run_in_executor(self._pool, fn, *args)

    def _missing(self, what: str, fn: Callable[..., Any], *args: Any,
                 **kwargs: Any) -> dict[str, Any] | None:
        """An object, or None if there is none."""
        try:
            found: dict[str, Any] = self._call(what, fn, *args, **kwargs)
            return found
        except NotFound:
            return None

    # ------------------------------------------------------------ start-up

    def recover(self) -> None:
        """Nothing to adopt (Kubernetes keeps it all); check the API server and Kueue."""
        try:
            self._call("list Kueue's ClusterQueues", self.custom.list_cluster_custom_object,
                       KUEUE_GROUP, KUEUE_VERSION, "clusterqueues", limit=1)
        except NotFound as exc:
            raise UsageError(f"Kueue is not installed in this cluster (no {KUEUE_API} "
                             f"ClusterQueue): install it first (see the README)") from exc
        try:
            self._sync_idle()
        except PodsweepError as exc:    # projects are still usable; the next change retries
            log.warning("could not set the idle CPUs' ClusterQueue: %s", exc)

    def shutdown(self) -> None:
        for response in list(self._streams):    # unblock the workers reading logs
            _abort(response)
        self._pool.shutdown(wait=False, cancel_futures=True)
        self.api.close()

    # ------------------------------------------------------------ projects

    def info(self) -> ClusterInfo:
        """One entry per GPU the nodes offer, with a pod that holds GPUs on its node."""
        try:
            nodes = self._call("list nodes", self.core.list_node)["items"]
        except Forbidden:
            return ClusterInfo(self.kind, [], shared_filesystem=False, isolation="containers")
        holders: dict[str, list[tuple[str, str | None]]] = {}    # node -> (pod, project)
        for pod in self._pods(None):
            node = (pod.get("spec") or {}).get("nodeName")
            if node and pod_status(pod)[0] in (PodStatus.RUNNING.value,
                                               PodStatus.TERMINATING.value):
                meta = pod["metadata"]
                project = (meta.get("labels") or {}).get(PROJECT_LABEL)
                holders.setdefault(node, []).extend([(meta["name"], project)] * _pod_gpus(pod))
        gpus: list[dict[str, Any]] = []
        for node in sorted(nodes, key=lambda n: n["metadata"]["name"]):
            name = node["metadata"]["name"]
            count = _quantity(((node.get("status") or {}).get("allocatable") or {})
                              .get(GPU, 0))
            held = holders.get(name, [])
            for i in range(count):
                holder, project = held[i] if i < len(held) else (None, None)
                gpus.append({"index": len(gpus), "name": f"{name}/{i}", "pod": holder,
                             "project": project})
        return ClusterInfo(self.kind, gpus, shared_filesystem=False, isolation="containers")

    def create_project(self, name: str, gpus: int, cpus: int = 0) -> ProjectInfo:
        check_name("project", name)
        check_count("--gpus", gpus, 0)
        check_count("--cpus", cpus, 0)
        objects = {o["kind"]: o for o in project_objects(name, gpus, cpus)}
        ns = objects["Namespace"]["metadata"]["name"]
        if self._missing("read a namespace", self.core.read_namespace, ns) is not None:
            raise Conflict(f"project {name!r} already exists (namespace {ns})")
        with contextlib.suppress(Conflict):     # the projects share it
            self._call("create a ResourceFlavor", self.custom.create_cluster_custom_object,
                       KUEUE_GROUP, KUEUE_VERSION, "resourceflavors",
                       objects["ResourceFlavor"])
        try:
            self._call("create a ClusterQueue", self.custom.create_cluster_custom_object,
                       KUEUE_GROUP, KUEUE_VERSION, "clusterqueues", objects["ClusterQueue"])
        except Conflict as exc:
            queue = self._missing("read a ClusterQueue", self.custom.get_cluster_custom_object,
                                  KUEUE_GROUP, KUEUE_VERSION, "clusterqueues", name) or {}
            if (queue.get("metadata", {}).get("labels") or {}).get(PROJECT_LABEL) != name:
                raise Conflict(f"a Kueue ClusterQueue {name!r} exists that is not podsweep's; "
                               f"choose another project name") from exc
            # podsweep's own, left by a create that stopped before the namespace: finish it
            self._patch_quota(name, gpus, cpus)
        self._call("create a namespace", self.core.create_namespace, objects["Namespace"])
        with contextlib.suppress(Conflict):
            self._call("create a LocalQueue", self.custom.create_namespaced_custom_object,
                       KUEUE_GROUP, KUEUE_VERSION, ns, "localqueues", objects["LocalQueue"])
        if cpus:
            self._sync_idle()
        return self._project_infos([name], {name: (gpus, cpus)})[0]

    def set_quota(self, name: str, gpus: int | None = None, cpus: int | None = None) -> None:
        if gpus is not None:
            check_count("--gpus", gpus, 0)
        if cpus is not None:
            check_count("--cpus", cpus, 0)
        if not self.project_exists(name):
            raise NotFound(f"project {name!r} not found")
        if gpus is None and cpus is None:
            return
        queue = self._missing("read a ClusterQueue", self.custom.get_cluster_custom_object,
                              KUEUE_GROUP, KUEUE_VERSION, "clusterqueues", name) or {}
        self._patch_quota(name, _nominal(queue, GPU) if gpus is None else gpus,
                          _nominal(queue, "cpu") if cpus is None else cpus)
        if cpus is not None:
            self._sync_idle()

    def _patch_quota(self, name: str, gpus: int, cpus: int) -> None:
        queue = next(o for o in project_objects(name, gpus, cpus)
                     if o["kind"] == "ClusterQueue")
        # a merge patch replaces the list whole: the project's one group, its new quotas
        self._call("set a ClusterQueue's quota", self.custom.patch_cluster_custom_object,
                   KUEUE_GROUP, KUEUE_VERSION, "clusterqueues", name,
                   {"spec": {"resourceGroups": queue["spec"]["resourceGroups"]}},
                   _content_type="application/merge-patch+json")

    def _sync_idle(self) -> None:
        """Set the idle queue's CPUs: the nodes' allocatable CPUs less the projects' CPU
        quotas (none if they promise more), so that Kueue lends what no project holds and
        a project within its quota reclaims what was lent. Read again at every ``up`` and
        CPU quota change: nodes added meanwhile count from then."""
        try:
            nodes = self._call("list nodes", self.core.list_node)["items"]
            total = sum(_quantity(((n.get("status") or {}).get("allocatable") or {})
                                      .get("cpu", 0)) for n in nodes)
        except Forbidden:
            log.warning("may not list nodes: CPUs are lent without bound (%d)", CPU_QUOTA)
            total = CPU_QUOTA
        queues = self._call("list ClusterQueues", self.custom.list_cluster_custom_object,
                            KUEUE_GROUP, KUEUE_VERSION, "clusterqueues",
                            label_selector=PROJECT_LABEL)["items"]
        for queue in queues:
            if _nominal(queue, "cpu") == CPU_QUOTA:
                # made before CPU quotas bound, with one that never did: now the default, 0
                log.info("ClusterQueue %s: CPU quota %d -> 0", queue["metadata"]["name"],
                         CPU_QUOTA)
                self._patch_quota(queue["metadata"]["name"], _nominal(queue, GPU), 0)
        body = idle_queue(max(0, total - sum(_nominal(q, "cpu") for q in queues
                                             if _nominal(q, "cpu") != CPU_QUOTA)))
        try:
            self._call("create the idle CPUs' ClusterQueue",
                       self.custom.create_cluster_custom_object, KUEUE_GROUP, KUEUE_VERSION,
                       "clusterqueues", body)
        except Conflict:
            self._call("set the idle CPUs' ClusterQueue", self.custom.patch_cluster_custom_object,
                       KUEUE_GROUP, KUEUE_VERSION, "clusterqueues", IDLE_QUEUE,
                       {"spec": {"resourceGroups": body["spec"]["resourceGroups"]}},
                       _content_type="application/merge-patch+json")

    def project_exists(self, name: str) -> bool:
        try:
            ns = namespace(name)
        except UsageError:
            return False
        found = self._missing("read a namespace", self.core.read_namespace, ns)
        return found is not None and \
            (found["metadata"].get("labels") or {}).get(PROJECT_LABEL) == name

    def projects(self) -> list[ProjectInfo]:
        found = self._call("list namespaces", self.core.list_namespace,
                           label_selector=PROJECT_LABEL)["items"]
        names = sorted(n["metadata"]["labels"][PROJECT_LABEL] for n in found)
        queues = self._call("list ClusterQueues", self.custom.list_cluster_custom_object,
                            KUEUE_GROUP, KUEUE_VERSION, "clusterqueues",
                            label_selector=PROJECT_LABEL)["items"]
        quotas = {q["metadata"]["name"]: (_nominal(q, GPU), _nominal(q, "cpu")) for q in queues}
        return self._project_infos(names, quotas)

    def _project_infos(self, names: list[str],
                       quotas: dict[str, tuple[int, int]]) -> list[ProjectInfo]:
        jobs = self.jobs(names) if names else []
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

    # ------------------------------------------------------------ jobs

    def submit(self, spec: JobSpec, user: str) -> JobInfo:
        body = job_object(spec, user)       # -i IMAGE required: a clear error without it
        if not self.project_exists(spec.project):
            raise NotFound(f"project {spec.project!r} not found; an admin creates it with "
                           f"podsweep project create {spec.project} --gpus N")
        try:
            created = self._call("create a Job", self.batch.create_namespaced_job,
                                 body["metadata"]["namespace"], body)
        except Conflict as exc:
            raise Conflict(f"job {spec.name!r} already exists in project {spec.project!r}; "
                           f"delete it first or choose another name") from exc
        return job_info(created, [])

    def _selector(self, projects: list[str] | None) -> str:
        if projects is None:
            return PROJECT_LABEL
        return f"{PROJECT_LABEL} in ({','.join(projects)})"

    def _pods(self, projects: list[str] | None) -> list[dict[str, Any]]:
        pods: list[dict[str, Any]] = self._call(
            "list pods", self.core.list_pod_for_all_namespaces,
            label_selector=self._selector(projects))["items"]
        return pods

    def jobs(self, projects: list[str] | None) -> list[JobInfo]:
        if projects is not None:
            projects = [p for p in projects if _valid(p)]
            if not projects:
                return []
        found = self._call("list Jobs", self.batch.list_job_for_all_namespaces,
                           label_selector=self._selector(projects))["items"]
        by_owner: dict[str, list[dict[str, Any]]] = {}
        for pod in self._pods(projects):
            by_owner.setdefault(_owner(pod) or "", []).append(pod)
        infos = [job_info(j, by_owner.get(j["metadata"].get("uid", ""), [])) for j in found]
        return sorted(infos, key=lambda j: (j.created, j.project, j.name))

    def _job(self, project: str, name: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """A Job and its own pods (not those of an earlier Job of the same name)."""
        try:
            ns = namespace(project)
        except UsageError as exc:
            raise NotFound(f"project {project!r} not found") from exc
        job = self._missing("read a Job", self.batch.read_namespaced_job, name, ns) \
            if _valid(name) else None
        if job is None:
            raise NotFound(f"job {name!r} not found in project {project!r}")
        pods = self._call("list pods", self.core.list_namespaced_pod, ns,
                          label_selector=f"{JOB_LABEL}={name}")["items"]
        uid = job["metadata"].get("uid")
        return job, [p for p in pods if _owner(p) == uid]

    def _workload_conditions(self, job: dict[str, Any]) -> list[dict[str, Any]]:
        """The conditions of the Kueue Workload of a Job: why it waits, when it was admitted,
        evicted or preempted. None where Kueue has not made one (or is not readable)."""
        try:
            found = self._call("list Kueue Workloads",
                               self.custom.list_namespaced_custom_object,
                               KUEUE_GROUP, KUEUE_VERSION, job["metadata"]["namespace"],
                               "workloads",
                               label_selector=f"{WORKLOAD_JOB_UID}={job['metadata']['uid']}")
        except (NotFound, Forbidden):
            return []
        return [dict(c) for w in found["items"]
                for c in (w.get("status") or {}).get("conditions") or []]

    def job(self, project: str, name: str) -> JobDetail:
        job, pods = self._job(project, name)
        infos = pod_infos(pods)
        conditions = self._workload_conditions(job)
        events = [EventInfo(_time(c.get("lastTransitionTime")) or 0.0,
                            f"Kueue {c.get('type')}" +
                            ("" if c.get("status") == "True" else " (no)"),
                            str(c.get("message") or c.get("reason") or ""))
                  for c in conditions]
        for pod in infos:
            events.append(EventInfo(pod.created, "Created", f"pod {pod.name}"))
            if pod.finished is not None and pod.status != PodStatus.RUNNING.value:
                why = f": {pod.reason}" if pod.reason else ""
                events.append(EventInfo(pod.finished, pod.status, f"pod {pod.name}{why}"))
        for cond in (job.get("status") or {}).get("conditions") or []:
            if cond.get("status") == "True":
                events.append(EventInfo(_time(cond.get("lastTransitionTime")) or 0.0,
                                        str(cond.get("type")),
                                        str(cond.get("message") or cond.get("reason") or "")))
        spec = job_spec(job)
        info = job_info(job, pods)
        waiting = next((c for c in conditions if c.get("type") == "QuotaReserved" and
                        c.get("status") == "False" and c.get("message")), None)
        if waiting is not None and (job.get("spec") or {}).get("suspend"):
            info = dataclasses.replace(info, message=f"waiting for Kueue: {waiting['message']}")
        return JobDetail(info, infos, sorted(events, key=lambda e: e.time),
                         spec.to_dict() if spec else {})

    def pod_log(self, project: str, name: str, pod: str, tail: int | None = None,
                follow: bool = False) -> AsyncIterator[bytes]:
        _, pods = self._job(project, name)
        names = [p["metadata"]["name"] for p in pods]
        if pod not in names:
            shown = ", ".join(names[-5:]) or "none yet"
            raise NotFound(f"pod {pod!r} is not a pod of job {name!r} (its pods: {shown})")
        return self._log(namespace(project), pod, tail, follow)

    async def _log(self, ns: str, pod: str, tail: int | None,
                   follow: bool) -> AsyncIterator[bytes]:
        from kubernetes.client.exceptions import ApiException

        def start() -> Any:
            return self.core.read_namespaced_pod_log(
                pod, ns, tail_lines=tail, follow=follow, _preload_content=False,
                _request_timeout=FOLLOW_TIMEOUT if follow else REQUEST_TIMEOUT)
        try:
            response = await self._in_thread(start)
        except ApiException as exc:
            if exc.status == 404:      # the pod has gone meanwhile
                return
            # e.g. 400 "container main is waiting to start: ContainerCreating"
            yield f"podsweep: no log yet: {_message(exc)}\n".encode()
            return
        chunks = response.stream(LOG_CHUNK, decode_content=True)
        ended = False
        self._streams.add(response)
        try:
            while (chunk := await self._in_thread(next, chunks, None)) is not None:
                if chunk:
                    yield chunk
            ended = True
        finally:
            self._streams.discard(response)
            if not ended:
                # the reader went away: unblock the worker still reading a followed log,
                # and drop the connection rather than return it to the pool mid-stream
                _abort(response)
            response.release_conn()

    async def delete(self, project: str, name: str) -> None:
        job, _ = await self._in_thread(self._job, project, name)
        uid = job["metadata"]["uid"]
        ns = job["metadata"]["namespace"]
        spec = job_spec(job)
        # Foreground: the Job stays (being deleted) until the garbage collector has deleted
        # its pods; the API's default for Jobs would orphan them
        with contextlib.suppress(NotFound):
            await self._in_thread(lambda: self._call(
                "delete a Job", self.batch.delete_namespaced_job, name, ns,
                propagation_policy="Foreground"))
        deadline = self.loop.time() + (spec.grace_period if spec else 30.0) + DELETE_SLACK
        while True:
            pods = await self._in_thread(lambda: self._call(
                "list pods", self.core.list_namespaced_pod, ns,
                label_selector=f"{JOB_LABEL}={name}")["items"])
            left = [p["metadata"]["name"] for p in pods if _owner(p) == uid and
                    pod_status(p)[0] in (PodStatus.RUNNING.value, PodStatus.TERMINATING.value,
                                         *STARTING)]
            if not left:
                # and the garbage collector has removed the Job: a list no longer shows it
                now = await self._in_thread(lambda: self._missing(
                    "read a Job", self.batch.read_namespaced_job, name, ns))
                if now is None or now["metadata"].get("uid") != uid:
                    return
            if self.loop.time() > deadline:
                log.warning("job %s/%s deleted, but the API still shows it or its pods %s",
                            project, name, ", ".join(left) or "(none running)")
                return
            await asyncio.sleep(DELETE_POLL)


def _abort(response: Any) -> None:
    """Close a streamed response, waking a thread blocked reading it (urllib3 >= 2.3)."""
    with contextlib.suppress(Exception):
        getattr(response, "shutdown", response.close)()
    with contextlib.suppress(Exception):
        response.close()


def _valid(name: str) -> bool:
    try:
        check_name("name", name)
        return True
    except UsageError:
        return False


def _pod_gpus(pod: dict[str, Any]) -> int:
    return sum(_quantity(((c.get("resources") or {}).get("limits") or {}).get(GPU, 0))
               for c in (pod.get("spec") or {}).get("containers") or [])


def _nominal(queue: dict[str, Any], name: str) -> int:
    """A ClusterQueue's nominal quota of a resource (GPUs or whole CPUs)."""
    for group in (queue.get("spec") or {}).get("resourceGroups") or []:
        for flavor in group.get("flavors") or []:
            for resource in flavor.get("resources") or []:
                if resource.get("name") == name:
                    return _quantity(resource.get("nominalQuota", 0))
    return 0


def _message(exc: Any) -> str:
    """The API server's one-line message in a failed call's Status body."""
    try:
        body = json.loads(exc.body or "{}")
        return str(body.get("message") or exc.reason)
    except (ValueError, AttributeError):
        return str(getattr(exc, "reason", exc))


def _error(what: str, exc: Any) -> PodsweepError:
    message = f"Kubernetes refused to {what}: {_message(exc)}"
    status = getattr(exc, "status", None)
    if status == 404:
        return NotFound(message)
    if status == 409:
        return Conflict(message)
    if status in (401, 403):
        return Forbidden(message)
    if status in (400, 422):
        return UsageError(message)
    if status is None or status >= 500:
        return Unavailable(message)
    return PodsweepError(message)
