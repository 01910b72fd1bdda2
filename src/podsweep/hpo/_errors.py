"""Errors raised by podsweep.hpo.

The library has its own root so that it never imports the rest of podsweep::

    HPOError
     ├── NotInitialized     pick()/report() before init()
     ├── NoTrialsLeft       every configuration of the space has been handed out
     │    └── NoTrialsLeftInPod   the same in a pod: uncaught, the pod exits 0 (not exported)
     ├── SpaceMismatch      pick() with another space than the experiment declared
     ├── InvalidArgument    a bad argument (also a ValueError)
     │    └── InvalidSpace  a grid or distribution that cannot be searched
     └── JournalError       a journal that cannot be read (unknown format, not a journal)
"""

from __future__ import annotations

import sys
from typing import Any, Tuple


class HPOError(Exception):
    """Root of every error podsweep.hpo raises."""


class NotInitialized(HPOError):
    """pick(), report() or trial() was called before init()."""


class NoTrialsLeft(HPOError):
    """Every configuration has been handed out; nothing was written."""


class NoTrialsLeftInPod(NoTrialsLeft, SystemExit):
    """NoTrialsLeft as pick() raises it in the main thread of a pod of a job.

    Nothing left to pick is not the pod's failure: more pods than configurations, or the
    rest held by live pods. A script may catch it as any NoTrialsLeft (it is an
    HPOError, and an Exception); uncaught, it is also a SystemExit, so the interpreter
    ends the usual way (finally blocks, atexit, buffers flushed) with status 0 rather
    than 1 and a traceback. The interpreter reads ``code`` only to exit on it: that is
    when the one line saying so is written to stderr. (An excepthook cannot change the
    exit status; leaving through os._exit would skip the rest of the shutdown.)

    Outside a pod, pick() raises a plain NoTrialsLeft: a process of one's own (a shell,
    a notebook, a test) is not ended by a library call.
    """

    def __init__(self, message: str, line: str) -> None:
        NoTrialsLeft.__init__(self, message)
        self.line = line
        self._said = False

    def __reduce__(self) -> Tuple[Any, ...]:
        return type(self), (str(self), self.line)

    @property
    def code(self) -> int:  # type: ignore[override]   # read-only: always 0
        if not self._said:
            self._said = True
            try:
                sys.stderr.write(self.line + "\n")
                sys.stderr.flush()
            except (AttributeError, OSError, ValueError):   # no stderr, or closed
                pass
        return 0


class SpaceMismatch(HPOError):
    """pick() was given another space or strategy than the experiment declared."""


class InvalidArgument(HPOError, ValueError):
    """An argument that cannot be used: a bad epoch, metric or lease."""


class InvalidSpace(InvalidArgument):
    """The grid or a distribution cannot be searched."""


class JournalError(HPOError):
    """The file is not a journal this version can read."""
