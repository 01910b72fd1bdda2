"""The GPUs the local cluster hands out: those NVML finds, or virtual ones.

NVML comes from the optional ``nvidia-ml-py`` package (module ``pynvml``), imported only when
GPUs are looked for. Without the package, without a driver, or on any NVML error, the machine
has no GPUs; a control plane started with ``--gpus N`` uses :func:`virtual_gpus` instead.

The index of a :class:`GPU` is NVML's, which orders devices by PCI bus id. CUDA numbers them
fastest first unless ``CUDA_DEVICE_ORDER=PCI_BUS_ID``; a pod's ``CUDA_VISIBLE_DEVICES`` is
unambiguous when it names the GPU's ``uuid`` (or when that variable is set as well).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
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
