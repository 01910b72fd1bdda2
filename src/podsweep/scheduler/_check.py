"""Refusing a snapshot that contradicts itself, before :func:`~podsweep.scheduler.decide`
decides on it: deciding on one could hand one GPU to two pods."""

from __future__ import annotations

from collections import Counter
from fractions import Fraction
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # only for annotations: policy imports this module
    from .policy import Snapshot


def check(snapshot: Snapshot) -> None:
    """Raise :class:`ValueError` if the snapshot contradicts itself (see
    :func:`~podsweep.scheduler.decide`)."""
    for what, keys in (
        ("project", [p.name for p in snapshot.projects]),
        ("job", [j.uid for j in snapshot.jobs]),
        ("GPU held by a pod", [g for p in snapshot.pods if p.fraction is None for g in p.gpus]),
    ):
        twice = sorted(str(k) for k, n in Counter(keys).items() if n > 1)
        if twice:
            raise ValueError(f"snapshot has one {what} twice: {', '.join(twice)}")
    if any(isinstance(j.gpus, float) or (j.gpus > 1 and j.gpus != int(j.gpus))
           for j in snapshot.jobs):
        raise ValueError("snapshot has a job asking for a float or a non-whole count above 1 "
                         "of GPUs: a share of one GPU is a Fraction in (0, 1)")
    if any(p.fraction is not None and (not 0 < p.fraction < 1 or len(p.gpus) != 1)
           for p in snapshot.pods):
        raise ValueError("snapshot has a pod holding a fraction outside (0, 1) or of other "
                         "than one GPU")
    load: dict[int, Fraction] = {}
    for p in snapshot.pods:
        for g in p.gpus:
            load[g] = load.get(g, Fraction(0)) + (p.fraction or 1)
    past = sorted(str(g) for g, n in load.items() if n > 1)
    if past:
        raise ValueError(f"snapshot has a GPU held past its whole by pods: {', '.join(past)}")
    if (
        any(min(p.quota, p.cpu_quota) < 0 for p in snapshot.projects)
        or any(min(j.gpus, j.cpu, j.parallelism, j.active) < 0 for j in snapshot.jobs)
        or any(p.cpus < 0 for p in snapshot.pods)
        or (snapshot.cpus is not None and snapshot.cpus < 0)
    ):
        raise ValueError("snapshot has a negative quota, GPU or CPU count, parallelism or "
                         "active count")
