"""Fair shares (phase 2 of :func:`~podsweep.scheduler.decide`): water-filling a resource
among projects by quota and demand, in exact fractions."""

from __future__ import annotations

from collections.abc import Mapping
from fractions import Fraction


def fair_shares(
    total: int, quotas: Mapping[str, int], demands: Mapping[str, int | Fraction]
) -> dict[str, float]:
    """Each project's fair share of ``total`` GPUs (phase 2), by project name; a demand
    may be a fraction of a GPU (pods of a fraction each).

    A project named in only one of ``quotas`` and ``demands`` has 0 for the other. When
    the quotas of the projects that want GPUs add up to more than ``total``, each still
    gets ``min(demand, quota)`` and the shares add up to more than ``total``: a quota is a
    promise that its project may reclaim its GPUs from borrowers, and scaling it down
    would let a borrower keep them.
    """
    return {name: float(share) for name, share in water_fill(total, quotas, demands).items()}


def water_fill(
    total: int, quotas: Mapping[str, int], demands: Mapping[str, int | Fraction]
) -> dict[str, Fraction]:
    if total < 0 or any(v < 0 for v in (*quotas.values(), *demands.values())):
        raise ValueError("GPU counts, quotas and demands must not be negative")
    names = sorted(set(quotas) | set(demands))
    quota = {p: quotas.get(p, 0) for p in names}
    demand = {p: Fraction(demands.get(p, 0)) for p in names}
    share = {p: min(demand[p], Fraction(quota[p])) for p in names}
    left = Fraction(total) - sum(share.values(), Fraction(0))
    while left > 0:
        unmet = [p for p in names if share[p] < demand[p]]
        if not unmet:
            break
        weight = {p: quota[p] for p in unmet}
        if not any(weight.values()):
            weight = dict.fromkeys(unmet, 1)
        whole = sum(weight.values())
        # Projects that the proportional offer would fill are filled exactly and leave the
        # pool; what they did not need is offered again to the others on the next pass.
        full = [p for p in unmet if demand[p] - share[p] <= left * weight[p] / whole]
        if not full:
            for p in unmet:
                share[p] += left * weight[p] / whole
            break
        for p in full:
            left -= demand[p] - share[p]
            share[p] = Fraction(demand[p])
    return share
