"""What a pod's environment holds, on every engine: the job's, the pod's, and an allowlist.

A pod sees exactly:

- :data:`ALLOWED` (and every ``LC_*``) taken from the control plane's own environment, where
  set there: what programs need to find themselves and speak the user's language;
- the job's ``-e NAME=VALUE``, which win over those;
- the pod's own variables (:func:`pod_variables`), which win over everything.

Nothing else of the control plane's environment reaches a pod: not ``PODSWEEP_HOME``,
``PODSWEEP_TOKEN`` or ``PODSWEEP_URL`` (which would lead a pod to the database and the
admin's credentials), not a cloud key or a proxy the admin happened to have set. A job that
needs a variable passes it with ``-e``.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from fractions import Fraction
from pathlib import Path

from ..model import JobSpec

ALLOWED = ("PATH", "HOME", "LANG", "LANGUAGE", "TZ", "TMPDIR", "USER", "LOGNAME", "SHELL",
           "TERM")
"""The control plane's variables that pods inherit, with every ``LC_*``."""


def base_env(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The allowlisted part of ``environ`` (the process's environment by default)."""
    source = os.environ if environ is None else environ
    return {k: v for k, v in source.items() if k in ALLOWED or k.startswith("LC_")}


def pod_variables(spec: JobSpec, *, job_uid: str, pod_name: str, index: int,
                  attempt: int) -> dict[str, str]:
    """The ``PODSWEEP_*`` variables and ``JOB_COMPLETION_INDEX`` of one pod."""
    return {"PODSWEEP_JOB_NAME": spec.name, "PODSWEEP_JOB_UID": job_uid,
            "PODSWEEP_PROJECT": spec.project, "PODSWEEP_POD_NAME": pod_name,
            "PODSWEEP_POD_INDEX": str(index), "JOB_COMPLETION_INDEX": str(index),
            "PODSWEEP_POD_ATTEMPT": str(attempt)}


def share_variables(fraction: Fraction) -> dict[str, str]:
    """What a pod holding ``fraction`` of one GPU is told of it: a contract with its program,
    which nothing enforces unless CUDA MPS runs (docs/local.md; :func:`mps_variables`).
    ``PODSWEEP_GPU_FRACTION`` is for any program to read; :func:`pod_env` also sets JAX's
    own cap on the GPU memory it takes to it."""
    # at most 100 in the denominator (model.parse_gpus): 4 places say every share closely
    # enough, and 0.5 or 0.25 exactly as typed
    return {"PODSWEEP_GPU_FRACTION": f"{float(fraction):.4f}".rstrip("0")}


def mps_variables(fraction: Fraction, memory_mib: int | None) -> dict[str, str]:
    """The limits a CUDA MPS server enforces on a client holding ``fraction`` of one GPU
    of ``memory_mib`` MiB (None: unknown, as for a virtual GPU): that share of the GPU's
    threads, in whole percent, and of its memory, in whole MiB, both rounded down so that
    the shares on one GPU never add up past it. The memory limit names device 0: MPS
    counts devices as the client sees them, and the pod sees only its GPU."""
    out = {"CUDA_MPS_ACTIVE_THREAD_PERCENTAGE": str(max(1, math.floor(fraction * 100)))}
    if memory_mib:
        out["CUDA_MPS_PINNED_DEVICE_MEM_LIMIT"] = f"0={math.floor(fraction * memory_mib)}M"
    return out


def pod_env(spec: JobSpec, *, job_uid: str, pod_name: str, index: int, attempt: int,
            gpus: Sequence[int], base: Mapping[str, str] | None = None,
            fraction: Fraction | None = None, gpu_memory_mib: int | None = None,
            mps: Path | None = None) -> dict[str, str]:
    """A pod's whole environment (see the module's docstring); ``base`` from :func:`base_env`.

    ``gpus`` are the NVML indexes the pod holds: ``CUDA_VISIBLE_DEVICES`` names them, in the
    PCI bus order NVML numbers them by. A pod with a ``fraction`` of its one GPU is told its
    share (:func:`share_variables`), and JAX's memory cap ``XLA_PYTHON_CLIENT_MEM_FRACTION``
    the same, unless the job's ``-e`` sets a lower one to leave headroom.

    ``mps`` is the pipe directory of a CUDA MPS control daemon running for the pods
    (``runtime.gpus.mps_pipe_directory``): every pod is told it, so that its CUDA connects
    to that daemon (the job's ``-e`` may name another), and a pod with a ``fraction`` gets
    the limits the MPS server enforces (:func:`mps_variables`; ``gpu_memory_mib`` is its
    GPU's memory), which no ``-e`` raises.
    """
    share = share_variables(fraction) if fraction is not None else {}
    jax = {"XLA_PYTHON_CLIENT_MEM_FRACTION": share["PODSWEEP_GPU_FRACTION"]} if share else {}
    pipe = {"CUDA_MPS_PIPE_DIRECTORY": str(mps)} if mps is not None else {}
    limits = (mps_variables(fraction, gpu_memory_mib)
              if mps is not None and fraction is not None else {})
    return {**(base_env() if base is None else base), **jax, **pipe, **spec.env,
            **pod_variables(spec, job_uid=job_uid, pod_name=pod_name, index=index,
                            attempt=attempt),
            "CUDA_DEVICE_ORDER": "PCI_BUS_ID",
            "CUDA_VISIBLE_DEVICES": ",".join(str(g) for g in gpus),
            "OMP_NUM_THREADS": str(spec.cpu),
            **share, **limits}
