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
        "mps_pipe_directory",
        "native_supervisor",
        "virtual_gpus",
        "wrap_command",
    ]
    for name in podsweep.runtime.__all__:
        module = getattr(podsweep.runtime, name).__module__
        # the error lives in podsweep's one error tree (podsweep/errors.py)
        expected = "podsweep.errors" if name == "RuntimeSetupError" else "podsweep.runtime."
        assert module.startswith(expected), (name, module)


def test_runtime_errors_are_podsweep_errors() -> None:
    from podsweep.errors import PodsweepError

    assert issubclass(podsweep.runtime.RuntimeSetupError, PodsweepError)
