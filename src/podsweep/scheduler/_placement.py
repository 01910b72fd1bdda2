"""Where pods sit on the GPUs: how much of each GPU is taken, and where a new pod fits.

A pod of whole GPUs takes each of its GPUs entirely (a load of 1 on each); a pod asking for a
fraction ``f`` in (0, 1) takes ``f`` of one GPU. No GPU's load passes 1, so a whole-GPU pod
shares its GPUs with nobody and fractions share only with fractions. Amounts are
:class:`~fractions.Fraction`: three pods of 1/3 fill a GPU exactly, with no rounding to
leave a sliver idle or to let a fourth in.
"""

from __future__ import annotations

from collections.abc import Iterable
from fractions import Fraction

ONE = Fraction(1)


def per_gpu(gpus: Fraction) -> Fraction:
    """What a pod asking for ``gpus`` takes of each GPU it is given: its fraction, or all."""
    return gpus if gpus < 1 else ONE


class Placement:
    """The load of each GPU of the machine, by id (ids of GPUs it lost are ignored)."""

    def __init__(self, machine: Iterable[int]) -> None:
        self.load: dict[int, Fraction] = {g: Fraction(0) for g in sorted(machine)}

    def copy(self) -> Placement:
        out = Placement(())
        out.load = dict(self.load)
        return out

    def put(self, gpus: Iterable[int], each: Fraction, sign: int = 1) -> None:
        """Add (``sign`` 1) or take away (-1) ``each`` on every GPU of ``gpus``."""
        for g in gpus:
            if g in self.load:
                self.load[g] += sign * each

    def fit(self, gpus: Fraction) -> tuple[int, ...] | None:
        """Where a pod asking for ``gpus`` would go, or None if it fits nowhere now.

        Whole GPUs: the lowest ids among the empty ones. A fraction: best fit, the GPU with
        the least room that still holds it (lowest id among equals), so that fractions
        gather on shared GPUs and whole GPUs stay free for pods that need them.
        """
        if gpus == 0:
            return ()
        if gpus < 1:
            room = [g for g, load in self.load.items() if load + gpus <= 1]
            return (min(room, key=lambda g: (-self.load[g], g)),) if room else None
        empty = [g for g, load in self.load.items() if load == 0]
        return tuple(empty[: int(gpus)]) if len(empty) >= gpus else None

    def take(self, gpus: Fraction) -> tuple[int, ...] | None:
        """:meth:`fit`, and hold what it found."""
        given = self.fit(gpus)
        if given is not None:
            self.put(given, per_gpu(gpus))
        return given
