"""The names other parts of podsweep code against."""

from __future__ import annotations

import podsweep.runtime


def test_public_names() -> None:
    assert podsweep.runtime.__all__ == [
        "GPU",
        "PodLaunch",
        "PodProcess",
        "RuntimeSetupError",
        "discover_gpus",
        "native_supervisor",
        "virtual_gpus",
        "wrap_command",
    ]
    for name in podsweep.runtime.__all__:
        assert getattr(podsweep.runtime, name).__module__.startswith("podsweep.runtime.")


def test_runtime_errors_are_podsweep_errors() -> None:
    from podsweep.errors import PodsweepError

    assert issubclass(podsweep.runtime.RuntimeSetupError, PodsweepError)
