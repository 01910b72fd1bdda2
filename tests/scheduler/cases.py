"""What the policy's table tests share: a row of a table, and the check every row gets."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from podsweep.scheduler import Decision, Snapshot, Start, decide


@dataclass(frozen=True)
class Case:
    """A snapshot and what :func:`decide` must make of it."""

    name: str
    snapshot: Snapshot
    starts: tuple[Start, ...] = ()
    preempt: tuple[str, ...] = ()
    shares: dict[str, float] | None = None          # GPU fair shares, where a row checks them
    cpu_shares: dict[str, float] | None = None      # CPU fair shares, likewise


def table(cases: list[Case]) -> pytest.MarkDecorator:
    """Parametrize a test by ``case``, each named by its row."""
    return pytest.mark.parametrize("case", cases, ids=[c.name for c in cases])


def decided(case: Case) -> Decision:
    """``decide(case.snapshot)``, checked against the row."""
    decision = decide(case.snapshot)
    assert decision.starts == case.starts
    assert decision.preempt == case.preempt
    if case.shares is not None:
        assert decision.shares == pytest.approx(case.shares)
    if case.cpu_shares is not None:
        assert decision.cpu_shares == pytest.approx(case.cpu_shares)
    return decision
