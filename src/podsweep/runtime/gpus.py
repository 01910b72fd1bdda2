"""The GPUs the local cluster hands out: those NVML finds, or virtual ones.

NVML comes from the optional ``nvidia-ml-py`` package (module ``pynvml``), imported only when
GPUs are looked for. Without the package, without a driver, or on any NVML error, the machine
has no GPUs; a control plane started with ``--gpus N`` uses :func:`virtual_gpus` instead.

The index of a :class:`GPU` is NVML's, which orders devices by PCI bus id. CUDA numbers them
fastest first unless ``CUDA_DEVICE_ORDER=PCI_BUS_ID``; a pod's ``CUDA_VISIBLE_DEVICES`` is
unambiguous when it names the GPU's ``uuid`` (or when that variable is set as well).

:func:`mps_pipe_directory` tells whether a CUDA MPS control daemon runs for pods to use:
then the shares of fractional pods can be enforced (``cluster/podenv.py``).
"""

from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class GPU:
    index: int
    name: str                # "NVIDIA H200", or "virtual"
    uuid: str | None         # "GPU-5f1c…"; None for a virtual GPU
    memory_mib: int | None   # total memory; None for a virtual GPU


def _text(value: Any) -> str:
    # Releases of nvidia-ml-py before 11.5 return bytes.
    return value.decode() if isinstance(value, bytes) else str(value)


def discover_gpus() -> list[GPU]:
    """Every GPU NVML reports, in NVML's order; ``[]`` where NVML cannot be used."""
    try:
        import pynvml  # type: ignore[import-not-found, import-untyped, unused-ignore]
    except ImportError:
        return []
    try:
        pynvml.nvmlInit()
    except Exception:
        # NVMLError_LibraryNotFound, _DriverNotLoaded, _NoPermission...: no usable GPU here.
        return []
    gpus: list[GPU] = []
    try:
        count = int(pynvml.nvmlDeviceGetCount())
    except Exception:
        count = 0
    try:
        for index in range(count):
            try:
                handle = pynvml.nvmlDeviceGetHandleByIndex(index)
                gpus.append(GPU(index=index, name=_text(pynvml.nvmlDeviceGetName(handle)),
                                uuid=_text(pynvml.nvmlDeviceGetUUID(handle)),
                                memory_mib=int(pynvml.nvmlDeviceGetMemoryInfo(handle).total)
                                // (1024 * 1024)))
            except Exception:
                # A GPU that NVML lists but cannot query (fallen off the bus) is not handed
                # out; the others still are, under their own indexes.
                continue
        return gpus
    finally:
        with contextlib.suppress(Exception):
            pynvml.nvmlShutdown()


def virtual_gpus(n: int) -> list[GPU]:
    """``n`` GPUs that exist only for scheduling: for machines without any, and for tests."""
    if n < 0:
        raise ValueError(f"the number of GPUs must be >= 0, got {n}")
    return [GPU(index=i, name="virtual", uuid=None, memory_mib=None) for i in range(n)]


MPS_PIPE_DIRECTORY = "/tmp/nvidia-mps"
"""Where CUDA MPS puts its pipes and sockets unless ``CUDA_MPS_PIPE_DIRECTORY`` says."""


def mps_pipe_directory(environ: Mapping[str, str]) -> Path | None:
    """The pipe directory of a CUDA MPS control daemon that a process with ``environ``
    would connect to, or None where none runs.

    NVIDIA documents that the control daemon, its servers and their clients talk through
    named pipes and UNIX sockets in ``CUDA_MPS_PIPE_DIRECTORY`` (``/tmp/nvidia-mps`` when
    unset), which must be the same for the daemon and its clients, and that the daemon
    writes its PID to ``nvidia-cuda-mps-control.pid`` there. When CUDA starts in a program
    it tries to connect to the daemon, through the socket named ``control`` in that
    directory, and runs without MPS if it cannot. So MPS is taken to run where ``control``
    is a socket or a pipe and the PID file, where there is one, names a live process (a
    daemon killed without ``quit`` leaves its socket behind).
    """
    directory = Path(environ.get("CUDA_MPS_PIPE_DIRECTORY") or MPS_PIPE_DIRECTORY)
    try:
        mode = (directory / "control").stat().st_mode
    except OSError:
        return None
    if not (stat.S_ISSOCK(mode) or stat.S_ISFIFO(mode)):
        return None
    try:
        pid = int((directory / "nvidia-cuda-mps-control.pid").read_text().strip())
    except (OSError, ValueError):
        return directory     # no PID file (older drivers), or one we may not read
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        pass                 # the daemon runs as root: alive, only not ours to signal
    return directory
