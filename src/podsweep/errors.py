"""Errors raised by podsweep outside its HPO library.

::

    PodsweepError            the root: the CLI prints its message as one line, exit 1
     └── UsageError          bad input from the user (exit 2)

``podsweep.hpo`` has a root of its own, :class:`podsweep.hpo.HPOError`, since it must not
import the rest of podsweep; the CLI treats it like a PodsweepError.
"""

from __future__ import annotations


class PodsweepError(Exception):
    """Root of podsweep's errors."""

    exit_code = 1


class UsageError(PodsweepError):
    """The user asked for something that cannot be done as asked."""

    exit_code = 2
