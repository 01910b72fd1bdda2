"""GPU discovery: NVML where it can be used, nothing (and no error) where it cannot."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

from podsweep.runtime import GPU, discover_gpus, virtual_gpus


def test_discovery_never_raises() -> None:
    gpus = discover_gpus()
    assert all(isinstance(g, GPU) for g in gpus)
    assert [g.index for g in gpus] == sorted(g.index for g in gpus)
    if importlib.util.find_spec("pynvml") is None:
        assert gpus == []


def test_discovery_finds_nothing_when_nvml_cannot_start(monkeypatch: pytest.MonkeyPatch,
                                                         tmp_path: Path) -> None:
    # A stand-in for nvidia-ml-py on a machine without a driver, where nvmlInit raises
    # (NVMLError_LibraryNotFound): the real package cannot be assumed installed here.
    (tmp_path / "pynvml.py").write_text(
        "class NVMLError(Exception):\n    pass\n\n"
        "def nvmlInit():\n    raise NVMLError('NVML Shared Library Not Found')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "pynvml", raising=False)
    assert discover_gpus() == []


def test_virtual_gpus() -> None:
    assert virtual_gpus(4) == [GPU(i, "virtual", None, None) for i in range(4)]
    assert virtual_gpus(0) == []
    with pytest.raises(ValueError):
        virtual_gpus(-1)
