"""The error tree: every failure podsweep knows has its class, HTTP status and exit code,
and the CLI gets back from the API the very class the server raised."""

from __future__ import annotations

import importlib
import pkgutil

import pytest

import podsweep
from podsweep import errors
from podsweep.errors import BY_NAME, PodsweepError, from_http, http_status


def every_subclass(cls: type) -> set[type]:
    out = set()
    for sub in cls.__subclasses__():
        out |= {sub} | every_subclass(sub)
    return out


def test_every_error_podsweep_defines_is_in_the_tree_with_a_name():
    for module in pkgutil.walk_packages(podsweep.__path__, "podsweep."):
        if ".server" in module.name or module.name.endswith("__main__"):
            continue        # the server imports nothing that defines errors
        importlib.import_module(module.name)
    defined = {c for c in every_subclass(PodsweepError) if c.__module__.startswith("podsweep")}
    assert defined <= set(BY_NAME.values()), defined - set(BY_NAME.values())
    assert all(c.__module__ == "podsweep.errors" for c in defined)


@pytest.mark.parametrize("name", sorted(BY_NAME))
def test_each_error_comes_back_from_the_api_as_itself(name):
    cls = BY_NAME[name]
    error = cls("it broke") if cls is not errors.TooManyRequests else cls("slow down", 3)
    back = from_http(http_status(error), str(error), name)
    if cls is errors.TooManyRequests:      # its retry-after travels in a header
        assert isinstance(back, errors.Unavailable)
        return
    assert type(back) is cls and str(back) == "it broke"
    assert back.exit_code == cls.exit_code


def test_statuses_and_exit_codes_of_the_new_branches():
    assert http_status(errors.StoreError("x")) == 500 and errors.StoreError.exit_code == 7
    assert http_status(errors.RuntimeSetupError("x")) == 500
    assert http_status(errors.SlurmError("x")) == 502 and errors.SlurmError.exit_code == 8
    assert isinstance(from_http(502, "x"), errors.EngineError)
    assert type(from_http(500, "x", "NoSuchClass")) is PodsweepError
