"""FakeKueue: a FAKE of Kueue's controllers, for tests only, acting on FakeApiServer's objects.

Just what podsweep's Kubernetes engine and the walk-through rely on, kept to Kueue's own
rules (``pkg/scheduler``, ``pkg/scheduler/preemption`` of kueue v0.9 to v0.14, classical
preemption, no fair sharing, every workload of priority 0):

- **Workloads.** A Job labelled ``kueue.x-k8s.io/queue-name`` gets a Workload (labelled with
  the Job's uid, owned by it) whose one pod set asks ``min(parallelism, completions)`` pods
  of the template's requests and GPU limits. It goes with its Job; it is ``Finished`` once
  the Job has a Complete or Failed condition, and its quota is free again.
- **Admission.** Those that need not borrow first, then the oldest, a pending Workload is
  admitted when every resource it asks
  fits what its ClusterQueue's cohort has free (its own unused nominal quota and what the
  others lend). A ``lendingLimit`` bounds what a queue lends, as Kueue's ``available``
  (``pkg/cache/resource_node.go``) counts it: the rest of its quota is its own, and its
  usage up to that is not the cohort's; no borrowing limits: conditions ``QuotaReserved`` and
  ``Admitted``, ``status.admission``, and the Job unsuspended. Else ``QuotaReserved`` False
  with Kueue's "insufficient unused quota" message. A namespace its ClusterQueue does not
  select, or a LocalQueue that is not there, keeps it pending.
- **Preemption** (``reclaimWithinCohort``). A resource that does not fit but is within the
  queue's nominal quota needs preemption. The candidates are the admitted Workloads of the
  cohort's other ClusterQueues that borrow such a resource, most recently admitted first;
  they are taken, in that order, until the preemptor fits **without borrowing any
  resource** (Kueue's ``workloadFits(..., allowBorrowing=false)``: with no
  ``borrowWithinCohort`` policy a queue reclaims only for a workload within its nominal
  quota in every resource it asks), then those not needed are given back. A target is
  evicted whole, as Kueue evicts: ``Evicted`` (reason ``Preempted``) and ``Preempted``
  (``InCohortReclamation``) conditions, its Job suspended (the job controller then stops its
  pods); once none of its pods is left, its quota is released (``QuotaReserved`` False,
  ``Requeued``) and it waits again like any other.
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any

from podsweep.cluster.kubernetes.views import condition, quantity

if TYPE_CHECKING:
    from .fake_apiserver import FakeApiServer

KUEUE = "kueue.x-k8s.io/v1beta1"
QUEUE_LABEL = "kueue.x-k8s.io/queue-name"
JOB_UID = "kueue.x-k8s.io/job-uid"
FLAVOR = "default-flavor"
ENDED = ("Succeeded", "Failed")


def set_condition(obj: dict[str, Any], kind: str, status: str, reason: str, message: str,
                  now: str) -> None:
    """metav1.Condition semantics: the transition time changes only with the status."""
    conditions = obj.setdefault("status", {}).setdefault("conditions", [])
    for cond in conditions:
        if cond["type"] == kind:
            if cond["status"] != status:
                cond["lastTransitionTime"] = now
            cond.update(status=status, reason=reason, message=message)
            return
    conditions.append({"type": kind, "status": status, "reason": reason, "message": message,
                       "lastTransitionTime": now})


def pod_requests(template: dict[str, Any]) -> dict[str, int]:
    """What one pod asks, as Kueue counts it: requests, and limits where none is requested."""
    out: dict[str, int] = {}
    for container in template["spec"]["containers"]:
        resources = container.get("resources") or {}
        asked = {**(resources.get("limits") or {}), **(resources.get("requests") or {})}
        for name, value in asked.items():
            out[name] = out.get(name, 0) + quantity(value)
    return out


class FakeKueue:
    """See the module docstring; :meth:`sync` is one pass of its controllers."""

    def __init__(self, api: FakeApiServer) -> None:
        self.api = api

    # ------------------------------------------------------------ reading

    def _workload_of(self, job: dict[str, Any]) -> dict[str, Any] | None:
        uid = job["metadata"]["uid"]
        return next((w for w in self.api.objects_of("Workload")
                     if w["metadata"]["labels"].get(JOB_UID) == uid), None)

    def _job_of(self, workload: dict[str, Any]) -> dict[str, Any] | None:
        ref = workload["metadata"]["ownerReferences"][0]
        job = self.api.objects.get(("Job", workload["metadata"]["namespace"], ref["name"]))
        return job if job is not None and job["metadata"]["uid"] == ref["uid"] else None

    def _queue_of(self, workload: dict[str, Any]) -> dict[str, Any] | None:
        """The ClusterQueue of a Workload, if its LocalQueue leads to one that selects its
        namespace."""
        ns = workload["metadata"]["namespace"]
        local = self.api.objects.get(("LocalQueue", ns, workload["spec"]["queueName"]))
        if local is None:
            return None
        queue = self.api.objects.get(("ClusterQueue", None, local["spec"]["clusterQueue"]))
        if queue is None:
            return None
        wanted = ((queue["spec"].get("namespaceSelector") or {}).get("matchLabels"))
        if wanted is None:      # Kueue: no namespaceSelector selects no namespace
            return None
        labels = self.api.objects[("Namespace", None, ns)]["metadata"].get("labels") or {}
        return queue if all(labels.get(k) == v for k, v in wanted.items()) else None

    @staticmethod
    def _nominal(queue: dict[str, Any]) -> dict[str, int]:
        return {r["name"]: quantity(r["nominalQuota"])
                for group in queue["spec"].get("resourceGroups") or []
                for flavor in group.get("flavors") or [] for r in flavor.get("resources") or []}

    def _guaranteed(self, queue: dict[str, Any]) -> dict[str, int]:
        """What of a queue's nominal quota it lends no one: nominal less lendingLimit."""
        return {r["name"]: max(0, quantity(r["nominalQuota"]) - quantity(r["lendingLimit"]))
                for group in queue["spec"].get("resourceGroups") or []
                for flavor in group.get("flavors") or [] for r in flavor.get("resources") or []
                if "lendingLimit" in r}

    def _available(self, queues: dict[str, dict[str, Any]], used: dict[str, dict[str, int]],
                   name: str, resource: str) -> int:
        """What of ``resource`` queue ``name`` may still take: its own unused guaranteed
        quota, and what its cohort has left of what its queues lend."""
        cohort = queues[name]["spec"].get("cohort")
        members = [n for n, q in queues.items() if cohort and q["spec"].get("cohort") == cohort]
        mine = self._guaranteed(queues[name]).get(resource, 0)
        pool = 0
        for member in members or [name]:
            kept = self._guaranteed(queues[member]).get(resource, 0)
            use = used[member].get(resource, 0)
            pool += self._nominal(queues[member]).get(resource, 0) - kept - max(0, use - kept)
        return max(0, mine - used[name].get(resource, 0)) + pool

    @staticmethod
    def _asks(workload: dict[str, Any]) -> dict[str, int]:
        out: dict[str, int] = {}
        for pod_set in workload["spec"]["podSets"]:
            for name, value in pod_requests(pod_set["template"]).items():
                out[name] = out.get(name, 0) + value * pod_set["count"]
        return out

    @staticmethod
    def _admitted(workload: dict[str, Any]) -> bool:
        return "admission" in workload.get("status", {})

    # ------------------------------------------------------------ the controllers

    def sync(self) -> None:
        api = self.api
        for job in api.objects_of("Job"):
            if QUEUE_LABEL in (job["metadata"].get("labels") or {}) and \
                    self._workload_of(job) is None:
                self._create_workload(job)
        for workload in api.objects_of("Workload"):
            job = self._job_of(workload)
            if job is None:         # the garbage collector: it goes with its Job
                del api.objects[("Workload", workload["metadata"]["namespace"],
                                 workload["metadata"]["name"])]
                continue
            finished = condition(job, "Complete") or condition(job, "Failed")
            if finished and not condition(workload, "Finished"):
                set_condition(workload, "Finished", "True", "JobFinished",
                              finished.get("message") or "Job finished", api._now())
            if condition(workload, "Evicted") and self._admitted(workload) and \
                    job["spec"].get("suspend") and not self._pods_left(job):
                message = condition(workload, "Evicted")["message"]  # type: ignore[index]
                del workload["status"]["admission"]
                set_condition(workload, "QuotaReserved", "False", "Pending", message,
                              api._now())
                set_condition(workload, "Admitted", "False", "NoReservation",
                              "The workload has no reservation", api._now())
                set_condition(workload, "Requeued", "True", "Preempted", message, api._now())
        self._schedule()

    def _pods_left(self, job: dict[str, Any]) -> bool:
        return any(p["status"]["phase"] not in ENDED for p in self.api._pods_of(job))

    def _create_workload(self, job: dict[str, Any]) -> None:
        meta, spec = job["metadata"], job["spec"]
        name = f"job-{meta['name']}-{uuid.uuid4().hex[:5]}"
        template = spec["template"]
        self.api.objects[("Workload", meta["namespace"], name)] = {
            "apiVersion": KUEUE, "kind": "Workload",
            "metadata": {"name": name, "namespace": meta["namespace"],
                         "uid": str(uuid.uuid4()), "creationTimestamp": self.api._now(),
                         "labels": {JOB_UID: meta["uid"]},
                         "ownerReferences": [{"apiVersion": "batch/v1", "kind": "Job",
                                              "name": meta["name"], "uid": meta["uid"],
                                              "controller": True}]},
            "spec": {"queueName": meta["labels"][QUEUE_LABEL], "podSets": [{
                "name": "main", "template": template,
                "count": min(int(spec.get("parallelism", 1)),
                             int(spec.get("completions", 1)))}]},
            "status": {"conditions": []}}

    def _schedule(self) -> None:
        """One scheduling cycle over a snapshot of the queues' usage, oldest first."""
        api = self.api
        queues = {q["metadata"]["name"]: q for q in api.objects_of("ClusterQueue")}
        usage: dict[str, dict[str, int]] = {name: {} for name in queues}
        admitted: list[dict[str, Any]] = []
        for workload in api.objects_of("Workload"):
            cq = (workload["status"].get("admission") or {}).get("clusterQueue")
            if cq in usage and not condition(workload, "Finished"):
                admitted.append(workload)
                for name, value in self._asks(workload).items():
                    usage[cq][name] = usage[cq].get(name, 0) + value
        waiting = [(w, self._queue_of(w)) for w in api.objects_of("Workload")
                   if not self._admitted(w) and not condition(w, "Finished")]

        def borrows(workload: dict[str, Any], queue: dict[str, Any]) -> bool:
            mine, used = self._nominal(queue), usage[queue["metadata"]["name"]]
            return any(used.get(r, 0) + v > mine.get(r, 0)
                       for r, v in self._asks(workload).items())

        # Kueue's scheduler: entries that need not borrow first, then the oldest
        pending = sorted(((w, q) for w, q in waiting if q is not None),
                         key=lambda wq: (borrows(*wq), wq[0]["metadata"]["creationTimestamp"],
                                         wq[0]["metadata"]["name"]))
        for workload, queue in pending:
            name = queue["metadata"]["name"]
            cohort = [n for n, q in queues.items()
                      if q["spec"].get("cohort") and
                      q["spec"].get("cohort") == queue["spec"].get("cohort")] or [name]
            asks = self._asks(workload)
            nominal = self._nominal(queue)

            free = {r: self._available(queues, usage, name, r) for r in asks}
            short = {r: v - free[r] for r, v in asks.items() if v > free[r]}
            if not short:
                self._admit(workload, name, asks)
                for r, v in asks.items():
                    usage[name][r] = usage[name].get(r, 0) + v
                continue
            resource, more = sorted(short.items())[0]
            set_condition(workload, "QuotaReserved", "False", "Pending",
                          f"couldn't assign flavors to pod set main: insufficient unused "
                          f"quota for {resource} in flavor {FLAVOR}, {more} more needed",
                          api._now())
            if all(asks[r] <= nominal.get(r, 0) for r in short) and \
                    all(usage[name].get(r, 0) < nominal.get(r, 0) for r in short):
                targets = self._reclaim(workload, name, asks, set(short), queues, usage,
                                        [w for w in admitted if w["status"]["admission"]
                                         ["clusterQueue"] in cohort])
                for target in targets:
                    self._evict(target, workload)

    def _reclaim(self, workload: dict[str, Any], name: str, asks: dict[str, int],
                 needed: set[str], queues: dict[str, dict[str, Any]],
                 usage: dict[str, dict[str, int]],
                 admitted: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Kueue's minimalPreemptions without borrowing: the fewest Workloads of borrowing
        queues whose removal lets ``workload`` fit within its queue's nominal quota."""
        used = {n: dict(u) for n, u in usage.items()}
        nominal = self._nominal(queues[name])

        def borrowing(queue: str) -> bool:
            mine = self._nominal(queues[queue])
            return any(used[queue].get(r, 0) > mine.get(r, 0) for r in needed)

        def fits() -> bool:
            return all(used[name].get(r, 0) + v <= nominal.get(r, 0) and
                       v <= self._available(queues, used, name, r) for r, v in asks.items())

        def move(victim: dict[str, Any], sign: int) -> None:
            queue = victim["status"]["admission"]["clusterQueue"]
            for r, v in self._asks(victim).items():
                used[queue][r] = used[queue].get(r, 0) + sign * v

        candidates = sorted(
            (w for w in admitted if w["status"]["admission"]["clusterQueue"] != name and
             any(self._asks(w).get(r) for r in needed)),
            key=lambda w: (not condition(w, "Evicted"),
                           # the most recently admitted first
                           _negated(condition(w, "QuotaReserved") or {}),
                           w["metadata"]["uid"]))
        targets: list[dict[str, Any]] = []
        for candidate in candidates:
            if not borrowing(candidate["status"]["admission"]["clusterQueue"]):
                continue
            move(candidate, -1)
            targets.append(candidate)
            if fits():
                break
        else:
            return []
        for victim in reversed(targets[:-1]):     # give back those not needed
            move(victim, +1)
            if fits():
                targets.remove(victim)
            else:
                move(victim, -1)
        return targets

    def _admit(self, workload: dict[str, Any], queue: str, asks: dict[str, int]) -> None:
        api = self.api
        pod_set = workload["spec"]["podSets"][0]
        workload["status"]["admission"] = {"clusterQueue": queue, "podSetAssignments": [{
            "name": pod_set["name"], "count": pod_set["count"],
            "flavors": {r: FLAVOR for r in asks},
            "resourceUsage": {r: str(v) for r, v in asks.items()}}]}
        set_condition(workload, "QuotaReserved", "True", "QuotaReserved",
                      f"Quota reserved in ClusterQueue {queue}", api._now())
        set_condition(workload, "Admitted", "True", "Admitted",
                      "The workload is admitted", api._now())
        for kind in ("Evicted", "Preempted"):      # as Kueue's SetQuotaReservation does
            previous = condition(workload, kind)
            if previous is not None:
                set_condition(workload, kind, "False", "QuotaReserved",
                              f"Previously: {previous['message']}", api._now())
        job = self._job_of(workload)
        if job is not None:         # Kueue's job reconciler starts the admitted Job
            job["spec"]["suspend"] = False

    def _evict(self, target: dict[str, Any], preemptor: dict[str, Any]) -> None:
        if condition(target, "Evicted"):
            return
        message = (f"Preempted to accommodate a workload (UID: {preemptor['metadata']['uid']}, "
                   f"JobUID: {preemptor['metadata']['labels'][JOB_UID]}) due to reclamation "
                   f"within the cohort")
        now = self.api._now()
        set_condition(target, "Evicted", "True", "Preempted", message, now)
        set_condition(target, "Preempted", "True", "InCohortReclamation", message, now)
        job = self._job_of(target)
        if job is not None:         # Kueue's job reconciler stops the evicted Job
            job["spec"]["suspend"] = True


def _negated(cond: dict[str, Any]) -> str:
    """A sort key that orders RFC 3339 times (all of one form) latest first."""
    stamp = cond.get("lastTransitionTime") or ""
    return "".join(chr(0x10FFFF - ord(c)) for c in stamp)
