"""FakeApiServer: a FAKE Kubernetes API server, for tests only (no real cluster runs here).

A real HTTP server on 127.0.0.1 (a thread) that serves just the REST subset podsweep's
Kubernetes cluster uses through the official client: namespaces, nodes, batch/v1 Jobs
(create, get, list, delete with its propagation policies), pods (list, get, log with
``tailLines`` and ``follow``), Kueue's v1beta1 ClusterQueues, ResourceFlavors and
LocalQueues (create, get, list, merge patch) and Workloads (get, list). Label selectors
(``k``, ``k=v``, ``k!=v``, ``k in (a,b)``) filter lists.

It validates what it receives, so a test fails for real on a wrong request: a bearer token;
the apiVersion and kind that the path serves; the namespace of the path; Namespaces and
Jobs against Kubernetes' own schemas in strict mode (kubernetes-validate, pinned version:
no unknown field); Kueue objects against the field names of Kueue's v1beta1 API; merge
patches only as ``application/merge-patch+json``; only the query parameters it knows.

Alone it runs no pod: the test plays the rest of the cluster (Kueue, the job controller,
the kubelets), or FakeCluster (fake_cluster.py) plays it for the test, through the same
methods: :meth:`admit` a Job, :meth:`add_pod` with a phase, :meth:`set_pod` (a preemption is
phase Failed with a ``DisruptionTarget`` condition), :meth:`write_log`; :meth:`hold` keeps
the next request waiting until the test lets it go. Job status follows
its pods as the job controller would (succeeded, failed not counting disrupted pods,
Complete and Failed conditions). Deleted pods terminate after ``termination_delay`` seconds,
or, with ``None``, when the test calls :meth:`end_terminating`. Its clock advances one
second per object created, so creation times order objects as they were made.
"""

from __future__ import annotations

import copy
import json
import re
import threading
import time
import uuid
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import kubernetes_validate
import yaml

from podsweep.cluster.kubernetes.views import quantity

KUBERNETES = "1.33.0"       # the schemas Namespaces and Jobs are validated against
TOKEN = "fake-apiserver-token"
KUEUE = "kueue.x-k8s.io/v1beta1"

# Kueue v1beta1 field names (ClusterQueueSpec, ResourceGroup, FlavorQuotas, ResourceQuota,
# ClusterQueuePreemption, LocalQueueSpec) and the values of its preemption enums.
KUEUE_FIELDS = {
    "ClusterQueue.spec": {"cohort", "namespaceSelector", "resourceGroups", "preemption",
                          "queueingStrategy", "flavorFungibility", "stopPolicy",
                          "fairSharing", "admissionChecks", "admissionChecksStrategy"},
    "resourceGroup": {"coveredResources", "flavors"},
    "flavor": {"name", "resources"},
    "resource": {"name", "nominalQuota", "borrowingLimit", "lendingLimit"},
    "preemption": {"reclaimWithinCohort", "withinClusterQueue", "borrowWithinCohort"},
    "LocalQueue.spec": {"clusterQueue", "stopPolicy"},
    "ResourceFlavor.spec": {"nodeLabels", "nodeTaints", "tolerations", "topologyName"},
}
PREEMPTION_VALUES = {"Never", "LowerPriority", "LowerOrNewerEqualPriority", "Any"}
NAME_RE = re.compile(r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")


class ApiError(Exception):
    def __init__(self, code: int, reason: str, message: str) -> None:
        super().__init__(message)
        self.code, self.reason, self.message = code, reason, message


# (api prefix, plural) -> (apiVersion, kind, namespaced, verbs)
RESOURCES = {
    ("api/v1", "namespaces"): ("v1", "Namespace", False, {"create", "get", "list"}),
    ("api/v1", "nodes"): ("v1", "Node", False, {"list"}),
    ("api/v1", "pods"): ("v1", "Pod", True, {"get", "list", "log"}),
    ("apis/batch/v1", "jobs"): ("batch/v1", "Job", True, {"create", "get", "list", "delete"}),
    (f"apis/{KUEUE}", "clusterqueues"): (KUEUE, "ClusterQueue", False,
                                         {"create", "get", "list", "patch"}),
    (f"apis/{KUEUE}", "resourceflavors"): (KUEUE, "ResourceFlavor", False,
                                           {"create", "get", "list"}),
    (f"apis/{KUEUE}", "localqueues"): (KUEUE, "LocalQueue", True, {"create", "get", "list"}),
    (f"apis/{KUEUE}", "workloads"): (KUEUE, "Workload", True, {"get", "list"}),
}
QUERY = {"labelSelector", "limit", "propagationPolicy", "tailLines", "follow", "pretty"}


def selector_matches(selector: str, labels: dict[str, str]) -> bool:
    """Kubernetes' label selector syntax, the forms podsweep uses; anything else is a 400."""
    for term in re.findall(r"[^,(]+(?:\([^)]*\))?", selector):
        term = term.strip()
        if m := re.fullmatch(r"([\w./-]+)\s+in\s+\(([^)]*)\)", term):
            values = {v.strip() for v in m.group(2).split(",")}
            if labels.get(m.group(1)) not in values:
                return False
        elif m := re.fullmatch(r"([\w./-]+)\s*!=\s*([\w.-]*)", term):
            if labels.get(m.group(1)) == m.group(2):
                return False
        elif m := re.fullmatch(r"([\w./-]+)\s*==?\s*([\w.-]*)", term):
            if labels.get(m.group(1)) != m.group(2):
                return False
        elif re.fullmatch(r"[\w./-]+", term):
            if term not in labels:
                return False
        else:
            raise ApiError(400, "BadRequest", f"unable to parse requirement: {term!r}")
    return True


class FakeApiServer:
    """See the module docstring. Use as a context manager, or start() and stop()."""

    def __init__(self, termination_delay: float | None = 0.05, kueue: bool = True) -> None:
        self.termination_delay = termination_delay
        self.kueue = kueue          # False: a cluster without Kueue's CRDs
        self.objects: dict[tuple[str, str | None, str], dict[str, Any]] = {}
        self.logs: dict[tuple[str, str], bytearray] = {}
        self.requests: list[tuple[str, str]] = []      # (method, path): what was asked
        self.changed = threading.Condition()
        self._clock = time.time()
        self._stopping = False
        self._held: tuple[threading.Event, threading.Event] | None = None
        self.released_in_time: bool | None = None     # how the last held request ended
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,),
                                        daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> FakeApiServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        with self.changed:
            self._stopping = True
            self.changed.notify_all()
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> FakeApiServer:
        return self.start()

    def __exit__(self, *_: Any) -> None:
        self.stop()

    def kubeconfig(self, path: Path, token: str = TOKEN) -> Path:
        path.write_text(yaml.safe_dump({
            "apiVersion": "v1", "kind": "Config", "current-context": "fake",
            "clusters": [{"name": "fake", "cluster": {"server": self.url}}],
            "users": [{"name": "fake", "user": {"token": token}}],
            "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "fake"}}],
        }))
        return path

    # ------------------------------------------------------------ the cluster's side

    def _now(self) -> str:
        self._clock += 1.0
        return datetime.fromtimestamp(self._clock, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")

    def get(self, kind: str, namespace: str | None, name: str) -> dict[str, Any] | None:
        with self.changed:
            found = self.objects.get((kind, namespace, name))
            return copy.deepcopy(found) if found else None

    def all(self, kind: str, namespace: str | None = None) -> list[dict[str, Any]]:
        with self.changed:
            return [copy.deepcopy(o) for (k, ns, _), o in sorted(self.objects.items())
                    if k == kind and (namespace is None or ns == namespace)]

    def objects_of(self, kind: str) -> list[dict[str, Any]]:
        """The live objects of a kind (not copies), for the fakes that play the cluster's
        controllers; call with :attr:`changed` held."""
        return [o for (k, _, _), o in sorted(self.objects.items()) if k == kind]

    def add_node(self, name: str, gpus: int) -> None:
        with self.changed:
            self.objects[("Node", None, name)] = {
                "apiVersion": "v1", "kind": "Node",
                "metadata": {"name": name, "uid": str(uuid.uuid4()),
                             "creationTimestamp": self._now()},
                "status": {"allocatable": {"cpu": "16", "nvidia.com/gpu": str(gpus)}}}

    def admit(self, namespace: str, job: str) -> None:
        """What Kueue does when the job fits its queue: unsuspend it."""
        with self.changed:
            self.objects[("Job", namespace, job)]["spec"]["suspend"] = False
            self.changed.notify_all()

    def add_pod(self, namespace: str, job: str, index: int, phase: str = "Running",
                node: str | None = "node-1") -> str:
        """What the job controller and a kubelet do: a pod of the job's template, named as
        the job controller names it (``generateName: JOB-INDEX-``), with the
        ``JOB_COMPLETION_INDEX`` variable it adds; ``node`` None: not scheduled yet."""
        with self.changed:
            owner = self.objects[("Job", namespace, job)]
            uid = owner["metadata"]["uid"]
            template = copy.deepcopy(owner["spec"]["template"])
            name = f"{job}-{index}-{uuid.uuid4().hex[:5]}"
            labels = {**template["metadata"].get("labels", {}),
                      "batch.kubernetes.io/controller-uid": uid,
                      "batch.kubernetes.io/job-name": job,
                      "batch.kubernetes.io/job-completion-index": str(index)}
            pod = {"apiVersion": "v1", "kind": "Pod",
                   "metadata": {"name": name, "namespace": namespace,
                                "uid": str(uuid.uuid4()), "creationTimestamp": self._now(),
                                "labels": labels,
                                "annotations": {
                                    "batch.kubernetes.io/job-completion-index": str(index)},
                                "ownerReferences": [{
                                    "apiVersion": "batch/v1", "kind": "Job", "name": job,
                                    "uid": uid, "controller": True,
                                    "blockOwnerDeletion": True}]},
                   "spec": template["spec"],
                   "status": {"phase": "Pending"}}
            if node is not None:
                pod["spec"]["nodeName"] = node
            for container in pod["spec"]["containers"]:
                container["env"] = [*container.get("env", []), {
                    "name": "JOB_COMPLETION_INDEX", "valueFrom": {"fieldRef": {
                        "fieldPath": "metadata.annotations['batch.kubernetes.io/"
                                     "job-completion-index']"}}}]
            self.objects[("Pod", namespace, name)] = pod
            self.logs[(namespace, name)] = bytearray()
            self._set_pod(pod, phase)
            return name

    def set_pod(self, namespace: str, name: str, phase: str, exit_code: int | None = None,
                disruption: str | None = None) -> None:
        """A pod's new phase; ``disruption`` adds a DisruptionTarget condition (its reason,
        e.g. ``PreemptionByKueue`` or ``EvictionByEvictionAPI``)."""
        with self.changed:
            pod = self.objects[("Pod", namespace, name)]
            if disruption:
                pod["status"].setdefault("conditions", []).append({
                    "type": "DisruptionTarget", "status": "True", "reason": disruption,
                    "message": f"{disruption}: the pod was preempted",
                    "lastTransitionTime": self._now()})
            self._set_pod(pod, phase, exit_code)

    def _set_pod(self, pod: dict[str, Any], phase: str, exit_code: int | None = None) -> None:
        status = pod["status"]
        status["phase"] = phase
        if phase == "Running":
            status["startTime"] = self._now()
            status["containerStatuses"] = [{"name": "main", "ready": True, "restartCount": 0,
                                            "image": "", "imageID": "",
                                            "state": {"running": {"startedAt": self._now()}}}]
        elif phase in ("Succeeded", "Failed"):
            code = exit_code if exit_code is not None else (0 if phase == "Succeeded" else 1)
            ran = [(s.get("state") or {}).get("running") or {}
                   for s in status.get("containerStatuses") or []]
            ended: dict[str, Any] = {"exitCode": code,
                                     "reason": "Completed" if code == 0 else "Error",
                                     "finishedAt": self._now()}
            if ran and ran[0].get("startedAt"):     # a container that ran says since when
                ended["startedAt"] = ran[0]["startedAt"]
            status["containerStatuses"] = [{
                "name": "main", "ready": False, "restartCount": 0, "image": "", "imageID": "",
                "state": {"terminated": ended}}]
        self._sync_job(pod)
        self.changed.notify_all()

    def set_workload(self, namespace: str, job: str, *conditions: tuple[str, str, str, str]
                     ) -> None:
        """What Kueue records of a Job: its Workload, with (type, status, reason, message)
        conditions, e.g. ``("QuotaReserved", "False", "Pending", "insufficient ...")``."""
        with self.changed:
            owner = self.objects[("Job", namespace, job)]
            name = f"job-{job}-{owner['metadata']['uid'][:5]}"
            self.objects[("Workload", namespace, name)] = {
                "apiVersion": KUEUE, "kind": "Workload",
                "metadata": {"name": name, "namespace": namespace,
                             "uid": str(uuid.uuid4()), "creationTimestamp": self._now(),
                             "labels": {"kueue.x-k8s.io/job-uid": owner["metadata"]["uid"]},
                             "ownerReferences": [{"apiVersion": "batch/v1", "kind": "Job",
                                                  "name": job, "uid": owner["metadata"]["uid"],
                                                  "controller": True}]},
                "spec": {"queueName": owner["metadata"]["labels"].get(
                    "kueue.x-k8s.io/queue-name")},
                "status": {"conditions": [
                    {"type": t, "status": st, "reason": r, "message": m,
                     "lastTransitionTime": self._now()} for t, st, r, m in conditions]}}
            self.changed.notify_all()

    def hold(self) -> tuple[threading.Event, threading.Event]:
        """The next request waits before it is answered: ``(arrived, release)``. The fake
        sets ``arrived`` when it comes, and answers once the test sets ``release`` (or 30 s
        have gone: then :attr:`released_in_time` is False)."""
        arrived, release = threading.Event(), threading.Event()
        with self.changed:
            self._held = (arrived, release)
            self.released_in_time = None
        return arrived, release

    def _wait_if_held(self) -> None:
        with self.changed:
            held, self._held = self._held, None
        if held is not None:
            held[0].set()
            self.released_in_time = held[1].wait(30)

    def write_log(self, namespace: str, pod: str, text: str) -> None:
        with self.changed:
            self.logs[(namespace, pod)] += text.encode()
            self.changed.notify_all()

    def end_terminating(self) -> None:
        """The kubelets report every pod being deleted gone (their grace periods over)."""
        with self.changed:
            for (kind, ns, name), obj in list(self.objects.items()):
                if kind == "Pod" and obj["metadata"].get("deletionTimestamp"):
                    self._remove_pod(ns, name)

    def _remove_pod(self, namespace: str | None, name: str) -> None:
        with self.changed:
            pod = self.objects.pop(("Pod", namespace, name), None)
            if pod is None:
                return
            # the garbage collector: a Job deleted in the foreground goes with its last pod
            for ref in pod["metadata"].get("ownerReferences", []):
                job = self.objects.get(("Job", namespace, ref["name"]))
                if job is not None and job["metadata"].get("deletionTimestamp") and \
                        not self._pods_of(job):
                    del self.objects[("Job", namespace, ref["name"])]
            self.changed.notify_all()

    def _pods_of(self, job: dict[str, Any]) -> list[dict[str, Any]]:
        uid = job["metadata"]["uid"]
        return [o for (k, _, _), o in self.objects.items() if k == "Pod" and
                any(r["uid"] == uid for r in o["metadata"].get("ownerReferences", []))]

    def _sync_job(self, pod: dict[str, Any]) -> None:
        """The job controller's accounting: counts and, at the end, a condition."""
        refs = pod["metadata"].get("ownerReferences", [])
        if not refs:
            return
        job = self.objects.get(("Job", pod["metadata"]["namespace"], refs[0]["name"]))
        if job is None:
            return
        pods = self._pods_of(job)
        status = job.setdefault("status", {})
        disrupted = [p for p in pods if any(c["type"] == "DisruptionTarget"
                                            for c in p["status"].get("conditions", []))]
        status["active"] = sum(p["status"]["phase"] in ("Pending", "Running") for p in pods)
        status["succeeded"] = sum(p["status"]["phase"] == "Succeeded" for p in pods)
        status["failed"] = sum(p["status"]["phase"] == "Failed" and p not in disrupted
                               for p in pods)
        if any(c["status"] == "True" for c in status.get("conditions", [])):
            return
        if status["succeeded"] >= job["spec"]["completions"]:
            status["conditions"] = [{"type": "Complete", "status": "True",
                                     "lastTransitionTime": self._now()}]
            status["completionTime"] = self._now()
        elif status["failed"] > job["spec"]["backoffLimit"]:
            status["conditions"] = [{"type": "Failed", "status": "True",
                                     "reason": "BackoffLimitExceeded",
                                     "message": "Job has reached the specified backoff limit",
                                     "lastTransitionTime": self._now()}]

    def _terminate(self, pod: dict[str, Any]) -> None:
        pod["metadata"]["deletionTimestamp"] = self._now()
        if self.termination_delay is not None:
            timer = threading.Timer(self.termination_delay, self._remove_pod,
                                    (pod["metadata"]["namespace"], pod["metadata"]["name"]))
            timer.daemon = True
            timer.start()

    # ------------------------------------------------------------ the API

    def handle(self, method: str, path: str, query: dict[str, str], body: Any,
               content_type: str) -> tuple[int, Any]:
        unknown = set(query) - QUERY
        if unknown:
            raise ApiError(400, "BadRequest", f"unknown query parameters {sorted(unknown)}")
        parts = [p for p in path.split("/") if p]
        prefix_len = 2 if parts[:1] == ["api"] else 3
        prefix, rest = "/".join(parts[:prefix_len]), parts[prefix_len:]
        namespace = None
        if len(rest) >= 3 and rest[0] == "namespaces" and (prefix, rest[2]) in RESOURCES:
            namespace, rest = rest[1], rest[2:]
        if not rest or (prefix, rest[0]) not in RESOURCES or \
                (not self.kueue and prefix == f"apis/{KUEUE}"):
            raise ApiError(404, "NotFound", f"the server could not find the requested "
                                            f"resource ({path})")
        api_version, kind, namespaced, verbs = RESOURCES[(prefix, rest[0])]
        name = rest[1] if len(rest) > 1 else None
        sub = rest[2] if len(rest) > 2 else None
        if namespaced and namespace is None and not (method == "GET" and name is None):
            raise ApiError(404, "NotFound", f"{kind} needs a namespace in its path")
        if not namespaced and namespace is not None:
            raise ApiError(404, "NotFound", f"{kind} is not namespaced")
        verb = {("POST", False): "create", ("GET", False): "list", ("GET", True): "get",
                ("PATCH", True): "patch", ("DELETE", True): "delete"}.get(
                    (method, name is not None))
        if sub == "log" and method == "GET":
            verb = "log"
        elif sub is not None:
            verb = None
        if verb not in verbs:
            raise ApiError(405, "MethodNotAllowed", f"{method} {path} is not served")
        with self.changed:
            if verb == "create":
                return 201, self._create(api_version, kind, namespace, body)
            if verb == "list":
                return 200, self._list(api_version, kind, namespace, query)
            assert name is not None
            obj = self.objects.get((kind, namespace, name))
            if obj is None:
                raise ApiError(404, "NotFound", f'{rest[0]} "{name}" not found')
            if verb == "get":
                return 200, copy.deepcopy(obj)
            if verb == "log":
                return 200, None        # the handler streams it (log_stream)
            if verb == "patch":
                return 200, self._patch(obj, body, content_type)
            if verb == "delete":
                return 200, self._delete(obj, query, body)
        raise AssertionError(verb)

    def _create(self, api_version: str, kind: str, namespace: str | None,
                body: Any) -> dict[str, Any]:
        if not isinstance(body, dict):
            raise ApiError(400, "BadRequest", "the body must be a JSON object")
        if body.get("apiVersion") != api_version or body.get("kind") != kind:
            raise ApiError(400, "BadRequest", f"expected apiVersion {api_version} kind {kind}, "
                                              f"got {body.get('apiVersion')} "
                                              f"{body.get('kind')}")
        meta = body.get("metadata") or {}
        name = meta.get("name", "")
        if not NAME_RE.match(name) or len(name) > 63:
            raise ApiError(422, "Invalid", f"metadata.name: Invalid value: {name!r}")
        if meta.get("namespace", namespace) != namespace:
            raise ApiError(400, "BadRequest", "the namespace of the provided object does not "
                                              "match the namespace sent on the request")
        if namespace is not None and ("Namespace", None, namespace) not in self.objects:
            raise ApiError(404, "NotFound", f'namespaces "{namespace}" not found')
        self._validate(kind, body)
        if (kind, namespace, name) in self.objects:
            raise ApiError(409, "AlreadyExists", f'{kind} "{name}" already exists')
        obj = copy.deepcopy(body)
        obj["metadata"].update(uid=str(uuid.uuid4()), creationTimestamp=self._now(),
                               resourceVersion="1")
        if namespace is not None:
            obj["metadata"]["namespace"] = namespace
        if kind == "Job":
            uid = obj["metadata"]["uid"]
            obj["spec"]["selector"] = {"matchLabels": {
                "batch.kubernetes.io/controller-uid": uid}}
            obj["spec"]["template"]["metadata"]["labels"].update({
                "batch.kubernetes.io/controller-uid": uid,
                "batch.kubernetes.io/job-name": name})
            obj["status"] = {}
        self.objects[(kind, namespace, name)] = obj
        self.changed.notify_all()
        return copy.deepcopy(obj)

    def _validate(self, kind: str, obj: dict[str, Any]) -> None:
        if kind in ("Namespace", "Job"):
            try:
                kubernetes_validate.validate(obj, KUBERNETES, strict=True)
            except kubernetes_validate.ValidationError as exc:
                raise ApiError(422, "Invalid", f"{kind} is invalid: {exc}") from exc
            return
        if set(obj) - {"apiVersion", "kind", "metadata", "spec"}:
            raise ApiError(422, "Invalid", f"{kind}: unknown top-level fields")
        self._validate_kueue(kind, obj.get("spec") or {})

    @staticmethod
    def _validate_kueue(kind: str, spec: dict[str, Any]) -> None:
        def only(where: str, got: dict[str, Any]) -> None:
            extra = set(got) - KUEUE_FIELDS[where]
            if extra:
                raise ApiError(422, "Invalid", f"{where}: unknown fields {sorted(extra)}")
        if kind == "ResourceFlavor":
            only("ResourceFlavor.spec", spec)
        elif kind == "LocalQueue":
            only("LocalQueue.spec", spec)
            if not spec.get("clusterQueue"):
                raise ApiError(422, "Invalid", "spec.clusterQueue: Required value")
        elif kind == "ClusterQueue":
            only("ClusterQueue.spec", spec)
            for group in spec.get("resourceGroups") or []:
                only("resourceGroup", group)
                for flavor in group.get("flavors") or []:
                    only("flavor", flavor)
                    for resource in flavor.get("resources") or []:
                        only("resource", resource)
                        if resource.get("name") not in group.get("coveredResources", []):
                            raise ApiError(422, "Invalid", "a flavor's resource must be "
                                                           "one of coveredResources")
                        quota = resource.get("nominalQuota")
                        if not re.fullmatch(r"\d+[a-zA-Z]*", str(quota)):
                            raise ApiError(422, "Invalid", f"nominalQuota {quota!r}")
                        # Kueue's webhook: a lendingLimit needs a cohort, and at most
                        # the nominal quota
                        lends = resource.get("lendingLimit")
                        if lends is not None and (
                                not spec.get("cohort") or
                                not re.fullmatch(r"\d+[a-zA-Z]*", str(lends)) or
                                quantity(lends) > quantity(quota)):
                            raise ApiError(422, "Invalid", f"lendingLimit {lends!r}")
            preemption = spec.get("preemption") or {}
            only("preemption", preemption)
            if set(preemption.values()) - PREEMPTION_VALUES:
                raise ApiError(422, "Invalid", f"preemption values {preemption}")

    def _list(self, api_version: str, kind: str, namespace: str | None,
              query: dict[str, str]) -> dict[str, Any]:
        selector = query.get("labelSelector", "")
        items = [copy.deepcopy(o) for (k, ns, _), o in sorted(self.objects.items())
                 if k == kind and (namespace is None or ns == namespace) and
                 selector_matches(selector, o["metadata"].get("labels") or {})]
        if "limit" in query:
            items = items[:int(query["limit"])]
        return {"apiVersion": api_version, "kind": f"{kind}List",
                "metadata": {"resourceVersion": "1"}, "items": items}

    def _patch(self, obj: dict[str, Any], body: Any, content_type: str) -> dict[str, Any]:
        if content_type != "application/merge-patch+json":
            raise ApiError(415, "UnsupportedMediaType",
                           f"this fake takes merge patches only, got {content_type!r}")
        if not isinstance(body, dict):
            raise ApiError(400, "BadRequest", "a merge patch is a JSON object")
        patched = _merge(copy.deepcopy(obj), body)
        if patched["metadata"]["name"] != obj["metadata"]["name"]:
            raise ApiError(422, "Invalid", "metadata.name cannot change")
        self._validate(obj["kind"], {k: v for k, v in patched.items() if k != "status"})
        obj.clear()
        obj.update(patched)
        self.changed.notify_all()
        return copy.deepcopy(obj)

    def _delete(self, job: dict[str, Any], query: dict[str, str],
                body: Any) -> dict[str, Any]:
        policy = query.get("propagationPolicy") or \
            (body or {}).get("propagationPolicy") or "Orphan"   # the API's default for Jobs
        if policy not in ("Orphan", "Background", "Foreground"):
            raise ApiError(400, "BadRequest", f"invalid propagationPolicy {policy!r}")
        meta = job["metadata"]
        key = ("Job", meta["namespace"], meta["name"])
        pods = self._pods_of(job)
        if policy == "Orphan":
            for pod in pods:
                pod["metadata"]["ownerReferences"] = []
            del self.objects[key]
        else:
            for pod in pods:
                if not pod["metadata"].get("deletionTimestamp"):
                    self._terminate(pod)
            if policy == "Background" or not pods:
                del self.objects[key]
            else:
                meta["deletionTimestamp"] = self._now()
                meta["finalizers"] = ["foregroundDeletion"]
        self.changed.notify_all()
        return {"apiVersion": "v1", "kind": "Status", "status": "Success",
                "details": {"name": meta["name"], "kind": "jobs"}}

    # ------------------------------------------------------------ logs

    def log_stream(self, namespace: str, name: str, query: dict[str, str]) -> Any:
        """The log's bytes: all at once, or (follow) chunks until the pod has ended."""
        pod = self.objects.get(("Pod", namespace, name))
        if pod is None:
            raise ApiError(404, "NotFound", f'pods "{name}" not found')
        if pod["status"]["phase"] == "Pending":
            raise ApiError(400, "BadRequest", f'container "main" in pod "{name}" is waiting '
                                              f'to start: ContainerCreating')
        data = bytes(self.logs.get((namespace, name), b""))
        if "tailLines" in query:
            lines = int(query["tailLines"])
            data = b"".join(data.splitlines(keepends=True)[-lines:]) if lines > 0 else b""
        follow = query.get("follow") == "true"
        offset = len(self.logs.get((namespace, name), b""))

        def chunks() -> Any:
            yield data
            if not follow:
                return
            nonlocal offset
            while True:
                with self.changed:
                    log = self.logs.get((namespace, name), bytearray())
                    now = self.objects.get(("Pod", namespace, name))
                    ended = now is None or now["status"]["phase"] in ("Succeeded", "Failed")
                    if len(log) > offset:
                        new, offset = bytes(log[offset:]), len(log)
                    elif ended or self._stopping:
                        return
                    else:
                        self.changed.wait(0.5)
                        continue
                yield new
        return chunks()


def _merge(target: Any, patch: Any) -> Any:
    """RFC 7386: objects merge, everything else (lists included) replaces; null deletes."""
    if not isinstance(patch, dict):
        return patch
    if not isinstance(target, dict):
        target = {}
    for key, value in patch.items():
        if value is None:
            target.pop(key, None)
        else:
            target[key] = _merge(target.get(key), value)
    return target


def _handler(fake: FakeApiServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *_: Any) -> None:
            pass

        def _send_json(self, code: int, data: Any) -> None:
            raw = json.dumps(data).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(raw)))
            self.end_headers()
            self.wfile.write(raw)

        def _serve(self, method: str) -> None:
            url = urlsplit(self.path)
            query = {k: v[-1] for k, v in parse_qs(url.query).items()}
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            fake.requests.append((method, url.path))
            fake._wait_if_held()
            try:
                if self.headers.get("Authorization") != f"Bearer {TOKEN}":
                    raise ApiError(401, "Unauthorized", "Unauthorized")
                try:
                    body = json.loads(raw) if raw else None
                except ValueError as exc:
                    raise ApiError(400, "BadRequest", f"invalid JSON: {exc}") from exc
                parts = [p for p in url.path.split("/") if p]
                if method == "GET" and url.path.endswith("/log"):
                    fake.handle(method, url.path, query, body, "")   # checks path and verbs
                    with fake.changed:
                        stream = fake.log_stream(parts[3], parts[5], query)
                    self._send_stream(stream, query.get("follow") == "true")
                    return
                code, data = fake.handle(method, url.path, query, body,
                                         self.headers.get("Content-Type", "").split(";")[0])
                self._send_json(code, data)
            except ApiError as exc:
                self._send_json(exc.code, {"apiVersion": "v1", "kind": "Status",
                                           "status": "Failure", "message": exc.message,
                                           "reason": exc.reason, "code": exc.code})

        def _send_stream(self, stream: Any, follow: bool) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            if not follow:
                data = b"".join(stream)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
                return
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            try:
                for chunk in stream:
                    if chunk:
                        self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                        self.wfile.flush()
                self.wfile.write(b"0\r\n\r\n")
            except (BrokenPipeError, ConnectionResetError):
                self.close_connection = True

        def do_GET(self) -> None:
            self._serve("GET")

        def do_POST(self) -> None:
            self._serve("POST")

        def do_PATCH(self) -> None:
            self._serve("PATCH")

        def do_DELETE(self) -> None:
            self._serve("DELETE")

    return Handler
