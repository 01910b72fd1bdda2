"""FakeCluster: the rest of a FAKE Kubernetes cluster around FakeApiServer, for tests only.

No real Kubernetes can run here (no kubelet, no container engine), so the conformance suite
runs podsweep's real Kubernetes engine, through its real client calls, against
FakeApiServer with these fakes playing the cluster's controllers, each as close to the real
one as podsweep can tell (opt-in: FakeApiServer alone still runs no pod):

- **Kueue** (:class:`~tests.kubernetes.fake_kueue.FakeKueue`): Workloads, admission by
  quota and cohort borrowing, preemption by ``reclaimWithinCohort``.
- **The job controller**: for an unsuspended Indexed Job, a pod (``generateName:
  JOB-INDEX-``, ``JOB_COMPLETION_INDEX``) for each index neither succeeded nor running, up
  to ``parallelism`` at once; a failed pod's index again after the back-off (``backoff``
  seconds, doubled at each counted failure: Kubernetes' 10 s by default); FakeApiServer's
  accounting sets the Job's counts and its Complete or Failed condition (a pod ended with a
  ``DisruptionTarget`` condition is not a failure, as the Job's ``podFailurePolicy`` says).
  A suspended (evicted) Job's pods are deleted, with ``DisruptionTarget``; a finished Job's
  running pods too.
- **The scheduler**: a pending pod goes to the first node whose allocatable
  ``nvidia.com/gpu`` and ``cpu`` its requests fit beside the pods already there.
- **The kubelet**: runs a pod's container command **as a process on this machine** (the
  image is ignored), with the container's ``env`` (``fieldRef`` values read from the pod,
  as the kubelet does; of this machine's environment only ``PATH``, ``HOME``, ``LANG`` and
  ``PYTHONPATH``, standing in for the image's) in its ``workingDir``, else ``/`` (the
  working directory of busybox, the suite's image). ``hostPath`` volumes are bound at
  their ``mountPath`` by podsweep's own sandbox (``podsweep.runtime.sandbox``: a mount
  namespace of the pod's own, nothing made on the host); any other volume leaves the pod
  Pending (``FailedMount``). The output goes to ``logs/NAMESPACE/POD.log`` and to the API's
  ``log`` (``follow`` too); the pod is Running, then Succeeded or Failed with the exit code
  (128 + the signal); when its main process ends, the rest of its process group is
  killed, as a container ends whole. A deleted pod's main process gets SIGTERM, then its
  process group SIGKILL after ``terminationGracePeriodSeconds``, and the pod goes from the
  API once its process has ended, as on a real cluster (its log with it, but for the
  file). A command that cannot start
  fails the pod with exit code 128 (``StartError``), as containerd reports it.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

from podsweep.cluster.kubernetes.views import completion_index, condition, quantity
from podsweep.model import Volume
from podsweep.runtime.sandbox import wrap_command

from .fake_apiserver import FakeApiServer
from .fake_kueue import ENDED, FakeKueue, pod_requests

GPU = "nvidia.com/gpu"
PASSED_ENV = ("PATH", "HOME", "LANG", "PYTHONPATH")
FIELD = re.compile(r"metadata\.(name|namespace|uid|labels|annotations)(?:\['([^']+)'\])?")


class FakeCluster:
    """See the module docstring. Use as a context manager, or start() and stop()."""

    def __init__(self, api: FakeApiServer, logs: Path, backoff: float = 10.0,
                 tick: float = 0.1) -> None:
        self.api = api
        self.logs = logs
        self.backoff = backoff
        self.tick = tick
        self.kueue = FakeKueue(api)
        self._procs: dict[tuple[str, str], subprocess.Popen[bytes]] = {}
        self._signalled: set[tuple[str, str]] = set()
        self._failed_at: dict[str, float] = {}     # pod uid -> when it failed (monotonic)
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="fake-cluster", daemon=True)

    def start(self) -> FakeCluster:
        self._thread.start()
        return self

    def stop(self) -> None:
        with self.api.changed:
            self._stopping = True
            self.api.changed.notify_all()
            procs = list(self._procs.values())
        self._thread.join(10)
        for proc in procs:          # nothing of a test's pods outlives it
            _kill(proc, signal.SIGKILL)
            proc.wait()

    def __enter__(self) -> FakeCluster:
        return self.start()

    def __exit__(self, *_: Any) -> None:
        self.stop()

    def log_file(self, namespace: str, pod: str) -> Path:
        return self.logs / namespace / f"{pod}.log"

    def _run(self) -> None:
        with self.api.changed:
            while not self._stopping:
                self.kueue.sync()
                self._job_controller()
                self._scheduler()
                self._kubelet()
                self.api.changed.notify_all()
                self.api.changed.wait(self.tick)

    # ------------------------------------------------------------ the job controller

    def _job_controller(self) -> None:
        api = self.api
        for job in api.objects_of("Job"):
            meta, spec = job["metadata"], job["spec"]
            if meta.get("deletionTimestamp"):
                continue        # FakeApiServer's delete terminates its pods
            pods = api._pods_of(job)
            live = [p for p in pods if p["status"]["phase"] not in ENDED]
            done = condition(job, "Complete") or condition(job, "Failed")
            if done or spec.get("suspend"):
                for pod in live:
                    if pod["metadata"].get("deletionTimestamp"):
                        continue
                    if not done:    # stopped by Kueue: a disruption, not a failure
                        pod["status"].setdefault("conditions", []).append({
                            "type": "DisruptionTarget", "status": "True",
                            "reason": "EvictionByKueue",
                            "message": "Kueue evicted the job's workload",
                            "lastTransitionTime": api._now()})
                    api._terminate(pod)
                continue
            succeeded = {completion_index(p) for p in pods
                         if p["status"]["phase"] == "Succeeded"}
            busy = {completion_index(p) for p in live}
            counted = [p for p in pods if p["status"]["phase"] == "Failed" and
                       not condition(p, "DisruptionTarget")]
            waiting = set()
            if counted:
                last = max(self._failed_at.get(p["metadata"]["uid"], 0.0) for p in counted)
                if time.monotonic() < last + self.backoff * 2 ** (len(counted) - 1):
                    waiting = {completion_index(p) for p in counted}
            active = len(live)
            for index in range(int(spec.get("completions", 1))):
                if active >= int(spec.get("parallelism", 1)):
                    break
                if index in succeeded or index in busy or index in waiting:
                    continue
                api.add_pod(meta["namespace"], meta["name"], index, phase="Pending",
                            node=None)
                active += 1

    # ------------------------------------------------------------ the scheduler

    def _scheduler(self) -> None:
        api = self.api
        pods = api.objects_of("Pod")
        for pod in pods:
            if pod["spec"].get("nodeName") or pod["metadata"].get("deletionTimestamp"):
                continue
            asks = pod_requests(pod)
            for node in api.objects_of("Node"):
                name = node["metadata"]["name"]
                used: dict[str, int] = {}
                for other in pods:
                    if other["spec"].get("nodeName") == name and \
                            other["status"]["phase"] not in ENDED:
                        for r, v in pod_requests(other).items():
                            used[r] = used.get(r, 0) + v
                allocatable = node["status"]["allocatable"]
                if all(used.get(r, 0) + asks.get(r, 0) <= quantity(allocatable.get(r, 0))
                       for r in (GPU, "cpu")):
                    pod["spec"]["nodeName"] = name
                    break

    # ------------------------------------------------------------ the kubelet

    def _kubelet(self) -> None:
        api = self.api
        for pod in api.objects_of("Pod"):
            meta = pod["metadata"]
            key = (meta["namespace"], meta["name"])
            if not pod["spec"].get("nodeName") and not meta.get("deletionTimestamp"):
                continue
            proc = self._procs.get(key)
            if meta.get("deletionTimestamp"):
                if proc is None:            # never started, or ended: gone at once
                    api._remove_pod(*key)
                elif key not in self._signalled:
                    self._signalled.add(key)
                    # the container's main process, as a runtime signals it; the rest of
                    # its processes die with it, or at the SIGKILL
                    proc.send_signal(signal.SIGTERM)
                    grace = float(pod["spec"].get("terminationGracePeriodSeconds", 30))
                    timer = threading.Timer(grace, _kill, (proc, signal.SIGKILL))
                    timer.daemon = True
                    timer.start()
            elif proc is None and pod["status"]["phase"] == "Pending":
                self._start(pod)

    def _start(self, pod: dict[str, Any]) -> None:
        api = self.api
        meta = pod["metadata"]
        key = (meta["namespace"], meta["name"])
        container = pod["spec"]["containers"][0]
        volumes, unmountable = self._volumes(pod, container)
        if unmountable:
            if not pod["status"].get("containerStatuses"):
                pod["status"]["containerStatuses"] = [{
                    "name": container["name"], "ready": False, "restartCount": 0,
                    "image": container["image"], "imageID": "",
                    "state": {"waiting": {"reason": "FailedMount", "message": unmountable}}}]
            return
        env = {k: os.environ[k] for k in PASSED_ENV if k in os.environ}
        env["HOSTNAME"] = meta["name"]
        for var in container.get("env") or []:
            env[var["name"]] = var["value"] if "value" in var else \
                _field(pod, var["valueFrom"]["fieldRef"]["fieldPath"])
        argv = [*container.get("command", []), *container.get("args", [])]
        workdir = container.get("workingDir") or "/"
        log = self.log_file(*key)
        log.parent.mkdir(parents=True, exist_ok=True)
        try:
            if volumes:
                argv, workdir = wrap_command(argv, volumes, workdir), None
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                    stderr=subprocess.STDOUT, env=env, cwd=workdir,
                                    start_new_session=True)
        except (OSError, ValueError) as exc:
            log.write_text(f"{exc}\n")
            api.write_log(*key, f"{exc}\n")
            api._set_pod(pod, "Running")
            self._ended(pod, 128)
            return
        self._procs[key] = proc
        api._set_pod(pod, "Running")
        threading.Thread(target=self._watch, args=(pod, proc, log), daemon=True,
                         name=f"fake-kubelet-{meta['name']}").start()

    def _volumes(self, pod: dict[str, Any],
                 container: dict[str, Any]) -> tuple[list[Volume], str | None]:
        """The container's hostPath mounts; why it cannot mount the others, or None."""
        sources = {v["name"]: v for v in pod["spec"].get("volumes") or []}
        out = []
        for mount in container.get("volumeMounts") or []:
            source = sources[mount["name"]]
            path = (source.get("hostPath") or {}).get("path")
            if path is None:
                return [], f"the fake kubelet mounts hostPath volumes only: {mount['name']}"
            if not os.path.isdir(path):
                return [], f"hostPath type check failed: {path} is not a directory"
            out.append(Volume(path, mount["mountPath"], bool(mount.get("readOnly"))))
        return out, None

    def _watch(self, pod: dict[str, Any], proc: subprocess.Popen[bytes], log: Path) -> None:
        """Copy the output to the log until the process ends; then end the pod."""
        assert proc.stdout is not None
        key = (pod["metadata"]["namespace"], pod["metadata"]["name"])
        reader = threading.Thread(target=self._copy, args=(proc.stdout, log, key),
                                  daemon=True)
        reader.start()
        code = proc.wait()
        _kill(proc, signal.SIGKILL)     # the container ends whole: what it left, too
        reader.join(10)
        with self.api.changed:
            self._procs.pop(key, None)
            self._signalled.discard(key)
            if self._stopping:
                return
            self._ended(pod, 128 - code if code < 0 else code)
            self.api.changed.notify_all()

    def _copy(self, stream: Any, log: Path, key: tuple[str, str]) -> None:
        with open(log, "ab") as out:
            while chunk := os.read(stream.fileno(), 1 << 16):
                out.write(chunk)
                out.flush()
                self.api.write_log(*key, chunk.decode(errors="replace"))

    def _ended(self, pod: dict[str, Any], code: int) -> None:
        phase = "Succeeded" if code == 0 else "Failed"
        if phase == "Failed" and not condition(pod, "DisruptionTarget"):
            self._failed_at[pod["metadata"]["uid"]] = time.monotonic()
        self.api._set_pod(pod, phase, code)
        if code == 128:
            pod["status"]["containerStatuses"][0]["state"]["terminated"]["reason"] = \
                "StartError"
        if pod["metadata"].get("deletionTimestamp"):
            self.api._remove_pod(pod["metadata"]["namespace"], pod["metadata"]["name"])


def _field(pod: dict[str, Any], path: str) -> str:
    """A ``fieldRef``'s value, the forms podsweep's Jobs use."""
    match = FIELD.fullmatch(path)
    if match is None:
        raise ValueError(f"the fake kubelet does not resolve fieldPath {path!r}")
    value = pod["metadata"].get(match[1])
    if match[2] is not None:
        value = (value or {}).get(match[2], "")
    return str(value or "")


def _kill(proc: subprocess.Popen[bytes], sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):    # all ended already
        os.killpg(proc.pid, sig)
