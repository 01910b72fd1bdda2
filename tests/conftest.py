"""Wiring shared by every test folder.

- The container image the local cluster's ``-i`` tests run, built here once per session
  (tests/containers.py).
- The suite runs in parallel (pytest-xdist, ``make test``): most tests wait on real processes
  rather than compute, so two workers on two cores finish it in far less time than one. A few
  things are one per machine, and the tests that use one run in one worker, one after another
  (``--dist loadgroup``): the Slurm cluster that scripts/slurm-up.sh starts (its 4 GPUs and
  its accounts are shared by every test on it) and podman's image store (the image is
  imported once, and a second import of the same tag would race with it).
"""

from __future__ import annotations

import pytest

from .containers import image

__all__ = ["image"]

#: a fixture or a parameter's value that names a resource of the machine -> its xdist group
SHARED = {"slurm": "slurm", "image": "podman", "rootless": "podman"}


@pytest.hookimpl(tryfirst=True)      # before xdist's, which reads the marks
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        names = set(getattr(item, "fixturenames", ()))
        params = getattr(getattr(item, "callspec", None), "params", {})
        group = next((g for name, g in SHARED.items()
                      if name in names or name in params.values()), None)
        if group is not None:
            item.add_marker(pytest.mark.xdist_group(group))


def pytest_configure(config: pytest.Config) -> None:
    """Slurm's tests must not run side by side: refuse a pytest whose xdist no longer groups
    (pytest 9.2 stopped honouring the nodeid suffix xdist groups by, and the marks are then
    silently ignored: pytest-dev/pytest-xdist#1386), hence pyproject's pytest<9.2."""
    if config.getoption("dist", "no") == "loadgroup" and pytest.version_tuple[:2] >= (9, 2):
        raise pytest.UsageError(f"pytest {pytest.__version__} ignores xdist's groups "
                                "(pytest-dev/pytest-xdist#1386): install pytest<9.2, "
                                "or run with -n 0")
