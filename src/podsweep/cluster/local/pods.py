"""A local pod's lifecycle: recorded, launched after the commit, watched, stopped, ended.

Each pod runs under a supervisor process in a session of its own (:mod:`podsweep.runtime`);
the engine watches the supervisor through a pidfd on its event loop, so a pod's exit
triggers a reconcile at once, never a sleeping poll. The reconcile accounts for the pod's
end (:func:`pod_end`), which may end its job.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import time
from fractions import Fraction
from pathlib import Path
from typing import NamedTuple

from ...errors import DiskFull, is_disk_full
from ...model import JobSpec, JobStatus, PodStatus, Volume, format_gpus, pod_name
from ...runtime import PodLaunch, PodProcess, RuntimeSetupError, mps_pipe_directory, wrap_command
from ...runtime.container import (
    INSTALL,
    Container,
    cdi_gpus,
    container_env,
    container_name,
    find_engine,
    pull_failure,
    remove,
    run_argv,
    write_env_file,
)
from ...runtime.sandbox import hidden_source
from ...store import Pod
from ..podenv import pod_env
from ..stored import DELETED, PREEMPTED, exit_reason, failed_message, succeeded_message
from .engine import DISK_FULL_RETRY, JOB_FAILED, LOST, LocalEngine
from .state import JobState

log = logging.getLogger("podsweep.cluster")


class PodEnd(NamedTuple):
    """How a pod's end is recorded: its status, its reason, whether it counts as a failure."""

    status: PodStatus
    reason: str | None
    counts: bool


def pod_end(reason: str | None, code: int, lost: bool) -> PodEnd:
    """How the end of a pod stopped for ``reason`` (None: it was not stopped) is recorded.

    ``code`` is its exit status; ``lost`` says its supervisor died without recording it.
    """
    if reason == DELETED:
        return PodEnd(PodStatus.DELETED, DELETED, False)
    if reason == JOB_FAILED:
        return PodEnd(PodStatus.FAILED, "stopped: the job failed", False)
    if reason == PREEMPTED and code != 0:   # exit 0 in its grace period: it finished
        return PodEnd(PodStatus.PREEMPTED, PREEMPTED, False)
    if code == 0:
        return PodEnd(PodStatus.SUCCEEDED, None, True)
    return PodEnd(PodStatus.FAILED, "supervisor lost" if lost else exit_reason(code), True)


class PodLifecycle(LocalEngine):
    """Start, watch, stop and end pods; account for a job's end."""

    def _start(self, state: JobState, index: int, attempt: int, gpus: tuple[int, ...],
               fraction: Fraction | None = None) -> None:
        """Record a new pod (with its share of its one GPU, if it holds a fraction); it is
        started once the record is committed."""
        job = state.job
        spec = job.spec
        name = pod_name(spec.name, index, attempt)
        pod_dir = self.pods_dir / job.uid / name      # made by PodProcess.launch
        pod = self.store.insert_pod(job.uid, index, attempt, name, gpus, str(pod_dir),
                                    fraction)
        key = self._key(pod)
        self._pods[key] = pod
        state.take(index, attempt)
        where = f" on GPU {','.join(map(str, gpus))}" if gpus else ""
        if fraction is not None:
            where += f" ({format_gpus(fraction)} of it)"
        self.store.event(job.uid, "Started", f"pod {name}{where}")
        if job.status is JobStatus.PENDING:
            self._update_job(state, status=JobStatus.RUNNING)
        self._after_commit(lambda: self._launch(state, pod))

    def _launch(self, state: JobState, pod: Pod) -> None:
        spec = state.job.spec
        pod_dir = Path(pod.dir)
        gpus = pod.gpus
        device = next((d for d in self.gpus if d.index in gpus), None)
        env = pod_env(spec, job_uid=pod.job_uid, pod_name=pod.name, index=pod.index,
                      attempt=pod.attempt, gpus=gpus, base=self._base_env,
                      fraction=pod.fraction,
                      gpu_memory_mib=device.memory_mib if device else None,
                      # looked for at each start: MPS may be started or stopped meanwhile
                      mps=mps_pipe_directory(os.environ))
        try:
            if spec.image:
                argv, env = self._container(state, pod, env)
                cwd = None
            else:
                argv = wrap_command(spec.command, spec.volumes, spec.working_dir,
                                    self.isolation)
                # in the sandbox, the sandbox changes into the working dir itself: it may
                # lie inside a volume that exists only in the pod's view
                cwd = None if spec.volumes or self.isolation else spec.working_dir
            proc = PodProcess.launch(PodLaunch(pod_dir, argv, env, cwd,
                                               pod_dir / "pod.log", spec.grace_period,
                                               self.log_limit),
                                     # the loop need not wait for the pod to start
                                     supervisor=self._supervisor, wait=False)
        except Exception as exc:   # a pod that cannot start fails like one that exits 1
            log.exception("pod %s could not start", pod.name)
            if is_disk_full(exc):
                # not the pod's fault: it never started, and runs again once there is space
                self._never_started[self._key(pod)] = pod
                raise DiskFull(str(exc)) from exc
            with contextlib.suppress(OSError):
                pod_dir.mkdir(parents=True, exist_ok=True)
                (pod_dir / "pod.log").write_text(f"podsweep: could not start the pod: {exc}\n")
            with self._batch():      # all of its end or none (a full disk)
                self._finish(self._pods.get(self._key(pod), pod), PodStatus.FAILED, 127,
                             str(exc))
            return
        key = self._key(pod)
        self._procs[key] = proc
        self._watch(key)

    def _container(self, state: JobState, pod: Pod,
                   env: dict[str, str]) -> tuple[list[str], dict[str, str]]:
        """The command line and the environment of a pod run in its job's image.

        The container is the pod's sandbox (docs/local.md): podsweep's own is not used."""
        spec = state.job.spec
        assert spec.image is not None
        engine = find_engine(self._base_env.get("PATH"))
        if engine is None:
            raise RuntimeSetupError(f"-i {spec.image}: no container engine on PATH any "
                                    f"more ({INSTALL})")
        uuids = {g.index: g.uuid for g in self.gpus}    # None for a virtual GPU
        cdi = bool(pod.gpus) and all(uuids.get(g) for g in pod.gpus) and cdi_gpus()
        client, inside = container_env(env, self._base_env, spec.env, pod.gpus, cdi)
        pod_dir = Path(pod.dir)
        # beside the pod's directory, which only its launch may make
        pod_dir.parent.mkdir(parents=True, exist_ok=True)
        env_file = pod_dir.parent / f"{pod.name}.env"
        write_env_file(env_file, inside)
        devices = [f"nvidia.com/gpu={uuids[g]}" for g in pod.gpus] if cdi else []
        container = Container(engine, spec.image, container_name(pod.job_uid, pod.name),
                              spec.command, self._image_volumes(spec), spec.working_dir,
                              str(env_file), devices)
        return run_argv(container, pod_dir), client

    def _watch(self, key: str) -> None:
        proc = self._procs[key]
        fd = proc.pidfd()
        if fd is None:
            self.loop.call_soon(self._exited, key)
            return
        self._fds[key] = fd
        self.loop.add_reader(fd, self._exited, key)

    def _exited(self, key: str) -> None:
        """A supervisor exited: stop watching it, and let the next reconcile account for it."""
        proc = self._procs.get(key)
        if proc is None:
            return
        # First, before anything that can raise: a reader left on a pidfd that stays
        # readable would call this again at once, for ever.
        fd = self._fds.pop(key, None)
        if fd is not None:
            self.loop.remove_reader(fd)
            os.close(fd)
        try:
            code = proc.exit_code()
        except OSError:
            log.exception("cannot read the end of pod %s; trying again in a second", key)
            self.loop.call_later(DISK_FULL_RETRY, self._exited, key)
            return
        if code is None:     # woken early: the supervisor is still there
            self._watch(key)
            return
        del self._procs[key]
        self._ended.append((key, proc, code))
        self.schedule_reconcile()

    def _account(self, key: str, proc: PodProcess, code: int) -> None:
        pod = self._pods.get(key)
        if pod is None:
            return
        status, reason, counts = pod_end(pod.reason, code, proc.lost)
        image = self._image_of(pod)
        if image is not None:
            pulled = pull_failure(Path(pod.dir))
            if pulled is not None and status is PodStatus.FAILED:
                # counted like any failure: retried up to the job's backoff limit, not for
                # ever as Kubernetes would (docs/local.md)
                reason = f"ImagePullBackOff: {pulled}"
            engine = find_engine(self._base_env.get("PATH"))
            if engine is not None and (code < 0 or proc.lost):
                # the client was killed: its container may still run, or be stored
                remove(engine, container_name(pod.job_uid, pod.name))
        self._finish(pod, status, code, reason, count=counts)

    def _image_volumes(self, spec: JobSpec) -> list[Volume]:
        """The job's volumes for podman, their sources resolved now: a source that is, lies
        in or holds a directory hidden from pods is refused (RuntimeSetupError), though
        submit checked it, since a link on the way may have changed since."""
        volumes = []
        for volume in spec.volumes:
            hidden = self.isolation and hidden_source(volume, self.isolation, holding=True)
            if hidden:
                raise RuntimeSetupError(f"-v {volume}: its source now reaches {hidden}, "
                                        f"the control plane's, which pods may not see")
            volumes.append(dataclasses.replace(volume, src=os.path.realpath(volume.src)))
        return volumes

    def _image_of(self, pod: Pod) -> str | None:
        state = self._states.get(pod.job_uid)
        job = state.job if state is not None else self.store.job(pod.job_uid)
        return job.spec.image if job is not None else None

    def _stop(self, pod: Pod, reason: str) -> None:
        """SIGTERM a pod; its supervisor SIGKILLs it after the job's grace period."""
        key = self._key(pod)
        pod = self._pods.get(key, pod)
        if pod.status is PodStatus.TERMINATING:
            if reason == DELETED:
                self.store.update_pod(pod, reason=DELETED)
                self._pods[key] = dataclasses.replace(pod, reason=DELETED)
            return
        self.store.update_pod(pod, status=PodStatus.TERMINATING, reason=reason)
        self._pods[key] = dataclasses.replace(pod, status=PodStatus.TERMINATING, reason=reason)
        if reason == PREEMPTED:
            self.store.event(pod.job_uid, PREEMPTED,
                             f"pod {pod.name}: its project is over its fair share and another "
                             f"project needs its GPU or CPUs; index {pod.index} will run again")
        proc = self._procs.get(key)
        if proc is not None:
            # once the store says so: a crash in between must not leave a pod that was
            # asked to stop recorded as one that failed
            self._after_commit(proc.terminate)

    def _finish(self, pod: Pod, status: PodStatus, code: int | None, reason: str | None,
                count: bool = True) -> None:
        now = time.time()
        self.store.update_pod(pod, status=status, exit_code=code, reason=reason, finished=now)
        self._pods.pop(self._key(pod), None)
        state = self._states.get(pod.job_uid)
        if state is None:
            idle = self._idle.get(pod.job_uid)
            if idle is not None and not any(p.job_uid == pod.job_uid
                                            for p in self._pods.values()):
                idle.set()
            return
        if status is PodStatus.SUCCEEDED:
            state.succeeded.add(pod.index)
            state.active.pop(pod.index, None)
            self._update_job(state, succeeded=len(state.succeeded))
            self.store.event(pod.job_uid, "Succeeded", f"pod {pod.name}")
        else:
            state.requeue(pod.index)
            if status is PodStatus.FAILED and count:
                self._update_job(state, failed=state.job.failed + 1)
                self.store.event(pod.job_uid, "Failed", f"pod {pod.name}: {reason}")
            elif status is PodStatus.FAILED and reason == LOST:
                self.store.event(pod.job_uid, "Lost", f"pod {pod.name} never started; it "
                                 f"runs again")
        self._settle_job(state)
        if not state.active:
            idle = self._idle.get(state.job.uid)
            if idle is not None:
                idle.set()
            if state.job.status.done and not state.deleting:
                del self._states[state.job.uid]     # nothing of it is scheduled any more
        self.schedule_reconcile()

    def _settle_job(self, state: JobState) -> None:
        """End the job if its pods have succeeded or failed enough (idempotent)."""
        job = state.job
        if job.succeeded != len(state.succeeded):
            self._update_job(state, succeeded=len(state.succeeded))
            job = state.job
        if job.status.done:
            return
        if len(state.succeeded) >= job.spec.completions:
            self._end_job(state, JobStatus.SUCCEEDED, succeeded_message(job.spec))
        elif job.failed > job.spec.backoff_limit:
            self._end_job(state, JobStatus.FAILED, failed_message(job))

    def _end_job(self, state: JobState, status: JobStatus, message: str) -> None:
        uid = state.job.uid
        self._update_job(state, status=status, finished=time.time(), message=message)
        self.store.event(uid, status.value, message)
        for pod in [p for p in self._pods.values() if p.job_uid == uid]:
            self._stop(pod, JOB_FAILED)


    def shutdown(self) -> None:
        """Stop watching (the pods go on running: a restarted control plane adopts them)."""
        for key, fd in list(self._fds.items()):
            self.loop.remove_reader(fd)
            os.close(fd)
            del self._fds[key]
