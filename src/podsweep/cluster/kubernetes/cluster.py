"""The Kubernetes cluster: jobs as Indexed batch/v1 Jobs, queued and preempted by Kueue.

Kubernetes holds all the state: a project is a namespace with its Kueue queues, a job is a
Job (its user a label, its spec as submitted an annotation), a pod is a pod. Nothing goes
into podsweep's store; every view is read from the API server when asked for, through the
official ``kubernetes`` client (an optional extra, imported when this cluster is opened).

The objects are those :mod:`.objects` renders; :mod:`.views` reads what the API server
sends back; :mod:`.api` makes the calls.

The protocol's views are synchronous, and each is a few API calls with a short timeout
(:data:`~.api.REQUEST_TIMEOUT`), so an unreachable API server fails a request with one line
within seconds. They wait in worker threads, never on the server's event loop: the engine is
a :class:`~podsweep.cluster.base.BlockingViews`, whose views the server awaits through
:func:`~podsweep.cluster.base.run_view`; ``delete`` and a log's reading are coroutines whose
each call runs in a worker thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from ...errors import Conflict, EngineError, Forbidden, NotFound, PodsweepError, UsageError
from ...model import JobSpec, check_count, check_name
from ...store import Store
from ..base import ClusterInfo, JobDetail, JobInfo, ProjectInfo
from .api import (
    FOLLOW_TIMEOUT,
    KUEUE_GROUP,
    KUEUE_VERSION,
    REQUEST_TIMEOUT,
    ApiCalls,
    abort,
    api_message,
)
from .objects import (
    CPU_QUOTA,
    GPU,
    IDLE_QUEUE,
    JOB_LABEL,
    KUEUE_API,
    PROJECT_LABEL,
    idle_queue,
    job_object,
    namespace,
    project_objects,
)
from .views import (
    cpu_quota,
    job_detail,
    job_info,
    job_infos,
    job_spec,
    node_gpus,
    nominal,
    owner,
    pods_left,
    project_infos,
    quantity,
    resource_quota,
    valid_name,
)

log = logging.getLogger("podsweep.cluster.kubernetes")

DELETE_POLL = 0.2
"""How often a delete looks whether its pods have gone (in a worker thread)."""

DELETE_SLACK = 120.0
"""How long past the job's grace period a delete waits for pods a node never reports gone."""

LOG_CHUNK = 1 << 16
WORKLOAD_JOB_UID = "kueue.x-k8s.io/job-uid"     # Kueue's label on a Job's Workload


def _unbound(nodes: tuple[int, int] | None) -> int:
    """The ``cpu`` quota of a project with CPU quota 0: the nodes' CPUs, which it cannot
    outgrow in pods that run (without bound where they cannot be read or say none)."""
    return nodes[0] if nodes and nodes[0] else CPU_QUOTA


class KubernetesCluster(ApiCalls):
    """Projects, jobs and pods in a Kubernetes cluster with Kueue; see the module docstring."""

    kind = "kubernetes"

    def __init__(self, api_client: Any, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(api_client, loop)
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
            self._sync_idle(self._nodes())
        except PodsweepError as exc:    # projects are still usable; the next change retries
            log.warning("could not set the idle CPUs' ClusterQueue: %s", exc)

    def shutdown(self) -> None:
        for response in list(self._streams):    # unblock the workers reading logs
            abort(response)
        self._pool.shutdown(wait=False, cancel_futures=True)
        self.api.close()

    # ------------------------------------------------------------ projects

    def info(self) -> ClusterInfo:
        """One entry per GPU the nodes offer, with a pod that holds GPUs on its node."""
        try:
            nodes = self._call("list nodes", self.core.list_node)["items"]
        except Forbidden:
            return ClusterInfo(self.kind, [], shared_filesystem=False, isolation="containers")
        gpus = node_gpus(nodes, self._pods(None))
        return ClusterInfo(self.kind, gpus, shared_filesystem=False, isolation="containers")

    def create_project(self, name: str, gpus: int, cpus: int = 0) -> ProjectInfo:
        check_name("project", name)
        check_count("--gpus", gpus, 0)
        check_count("--cpus", cpus, 0)
        nodes = self._nodes()
        objects = {o["kind"]: o for o in project_objects(name, gpus, cpus, _unbound(nodes))}
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
            self._patch_quota(name, gpus, cpus, nodes)
        self._call("create a namespace", self.core.create_namespace, objects["Namespace"])
        with contextlib.suppress(Conflict):
            self._call("create a LocalQueue", self.custom.create_namespaced_custom_object,
                       KUEUE_GROUP, KUEUE_VERSION, ns, "localqueues", objects["LocalQueue"])
        self._sync_idle(nodes)
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
        nodes = self._nodes()
        self._patch_quota(name, nominal(queue, GPU) if gpus is None else gpus,
                          cpu_quota(queue) if cpus is None else cpus, nodes)
        self._sync_idle(nodes)

    def _patch_quota(self, name: str, gpus: int, cpus: int,
                     nodes: tuple[int, int] | None) -> None:
        queue = next(o for o in project_objects(name, gpus, cpus, _unbound(nodes))
                     if o["kind"] == "ClusterQueue")
        # a merge patch replaces the list whole: the project's one group, its new quotas
        self._call("set a ClusterQueue's quota", self.custom.patch_cluster_custom_object,
                   KUEUE_GROUP, KUEUE_VERSION, "clusterqueues", name,
                   {"spec": {"resourceGroups": queue["spec"]["resourceGroups"]}},
                   _content_type="application/merge-patch+json")

    def _nodes(self) -> tuple[int, int] | None:
        """The nodes' allocatable CPUs and GPUs, in whole ones (the nodes there now); None
        where podsweep may not list nodes."""
        try:
            nodes = self._call("list nodes", self.core.list_node)["items"]
        except Forbidden:
            return None
        cpus, gpus = (sum(quantity(((n.get("status") or {}).get("allocatable") or {})
                                   .get(resource, 0)) for n in nodes)
                      for resource in ("cpu", GPU))
        return cpus, gpus

    def _sync_idle(self, nodes: tuple[int, int] | None) -> None:
        """Set the idle queue's CPUs and GPUs: the nodes' allocatable ones less the projects'
        quotas (none if they promise more), so that Kueue lends what no project holds and
        a project within its quota reclaims what was lent; and the ``cpu`` quota of each
        project with CPU quota 0 to the nodes' CPUs, so that it never binds. Read again at
        every ``up`` and quota change: nodes added meanwhile count from then."""
        if nodes is None:
            log.warning("may not list nodes: CPUs are lent without bound (%d), GPUs not at "
                        "all", CPU_QUOTA)
        total, gpus = nodes or (CPU_QUOTA, 0)
        queues = self._call("list ClusterQueues", self.custom.list_cluster_custom_object,
                            KUEUE_GROUP, KUEUE_VERSION, "clusterqueues",
                            label_selector=PROJECT_LABEL)["items"]
        for queue in queues:
            cpu = resource_quota(queue, "cpu")
            if cpu_quota(queue) == 0 and ("lendingLimit" not in cpu or
                                          nominal(queue, "cpu") != _unbound(nodes)):
                # CPU quota 0 written another way (0, which made every job borrow CPUs, or
                # CPU_QUOTA, before CPU quotas bound), or for other nodes than there are now
                log.info("ClusterQueue %s: CPU quota 0 -> cpu %d lent to no one",
                         queue["metadata"]["name"], _unbound(nodes))
                self._patch_quota(queue["metadata"]["name"], nominal(queue, GPU), 0, nodes)
        body = idle_queue(max(0, total - sum(cpu_quota(q) for q in queues)),
                          max(0, gpus - sum(nominal(q, GPU) for q in queues)))
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
        quotas = {q["metadata"]["name"]: (nominal(q, GPU), cpu_quota(q)) for q in queues}
        return self._project_infos(names, quotas)

    def _project_infos(self, names: list[str],
                       quotas: dict[str, tuple[int, int]]) -> list[ProjectInfo]:
        return project_infos(names, quotas, self.jobs(names) if names else [])

    # ------------------------------------------------------------ jobs

    def submit(self, spec: JobSpec, user: str) -> JobInfo:
        body = job_object(spec, user)       # -i IMAGE required: a clear error without it
        if not self.project_exists(spec.project):
            raise NotFound(f"project {spec.project!r} not found; an admin creates it with "
                           f"podsweep project create {spec.project} --gpus N")
        if spec.gpus:
            # a pod needing more GPUs than any node has would wait for ever (as on the local
            # cluster and Slurm, refused instead; the nodes counted are those there now)
            nodes = self._call("list nodes", self.core.list_node)["items"]
            most = max((int(quantity(((n.get("status") or {}).get("allocatable") or {})
                                     .get(GPU, 0))) for n in nodes), default=0)
            if spec.gpus > most:
                raise UsageError(f"-g {spec.gpus}: no Kubernetes node has more than {most} "
                                 f"GPU(s)")
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
            projects = [p for p in projects if valid_name(p)]
            if not projects:
                return []
        found = self._call("list Jobs", self.batch.list_job_for_all_namespaces,
                           label_selector=self._selector(projects))["items"]
        return job_infos(found, self._pods(projects))

    def _job(self, project: str, name: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """A Job and its own pods (not those of an earlier Job of the same name)."""
        try:
            ns = namespace(project)
        except UsageError as exc:
            raise NotFound(f"project {project!r} not found") from exc
        job = self._missing("read a Job", self.batch.read_namespaced_job, name, ns) \
            if valid_name(name) else None
        if job is None:
            raise NotFound(f"job {name!r} not found in project {project!r}")
        pods = self._call("list pods", self.core.list_namespaced_pod, ns,
                          label_selector=f"{JOB_LABEL}={name}")["items"]
        uid = job["metadata"].get("uid")
        return job, [p for p in pods if owner(p) == uid]

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
        return job_detail(job, pods, self._workload_conditions(job))

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
            yield f"podsweep: no log yet: {api_message(exc)}\n".encode()
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
                abort(response)
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
        wait = (spec.grace_period if spec else 30.0) + DELETE_SLACK
        deadline = self.loop.time() + wait
        while True:
            pods = await self._in_thread(lambda: self._call(
                "list pods", self.core.list_namespaced_pod, ns,
                label_selector=f"{JOB_LABEL}={name}")["items"])
            left = pods_left(pods, uid)
            if not left:
                # and the garbage collector has removed the Job: a list no longer shows it
                now = await self._in_thread(lambda: self._missing(
                    "read a Job", self.batch.read_namespaced_job, name, ns))
                if now is None or now["metadata"].get("uid") != uid:
                    return
            if self.loop.time() > deadline:
                if not left:    # no pod runs: the Job's own removal is the collector's
                    log.info("job %s/%s deleted; the API still shows the Job", project, name)
                    return
                # the contract is that no pod runs once delete returns: a node that never
                # reports its pods gone (down, cut off) leaves that unknown, so say so
                shown = ", ".join(left[:5]) + (f" and {len(left) - 5} more"
                                               if len(left) > 5 else "")
                raise EngineError(
                    f"job {name!r} is being deleted, but after {wait:.0f} s Kubernetes still "
                    f"shows its pods {shown} running or stopping: their nodes have not "
                    f"reported them gone; podsweep delete {name} -p {project} waits again")
            await asyncio.sleep(DELETE_POLL)
