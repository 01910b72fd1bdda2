"""Errors raised by podsweep.hpo.

The library has its own root so that it never imports the rest of podsweep::

    HPOError
     ├── NotInitialized     pick()/report() before init()
     ├── NoTrialsLeft       every configuration of the space has been handed out
     ├── SpaceMismatch      pick() with another space than the experiment declared
     ├── InvalidArgument    a bad argument (also a ValueError)
     │    └── InvalidSpace  a grid or distribution that cannot be searched
     └── JournalError       a journal that cannot be read (unknown format, not a journal)
"""

from __future__ import annotations


class HPOError(Exception):
    """Root of every error podsweep.hpo raises."""


class NotInitialized(HPOError):
    """pick(), report() or trial() was called before init()."""


class NoTrialsLeft(HPOError):
    """Every configuration has been handed out; nothing was written."""


class SpaceMismatch(HPOError):
    """pick() was given another space or strategy than the experiment declared."""


class InvalidArgument(HPOError, ValueError):
    """An argument that cannot be used: a bad epoch, metric or lease."""


class InvalidSpace(InvalidArgument):
    """The grid or a distribution cannot be searched."""


class JournalError(HPOError):
    """The file is not a journal this version can read."""
