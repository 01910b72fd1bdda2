"""Errors raised by podsweep outside its HPO library.

::

    PodsweepError            the root: the CLI prints its message as one line   exit 1
     ├── UsageError          bad input; nothing was changed                       exit 2
     │    └── Conflict       the name is taken                                    exit 2
     ├── NotFound            no such project, job, pod or user                    exit 3
     ├── Unauthorized        no token, or a wrong one                             exit 4
     ├── Forbidden           the user may not see or touch that                   exit 4
     ├── Unavailable         the control plane is not running or not reachable    exit 5
     │    └── TooManyRequests  refused for now (logins); retry_after seconds       exit 5
     ├── DiskFull            no space left where the control plane writes         exit 6
     ├── SetupError          this machine cannot do it as it is set up            exit 7
     │    ├── StoreError     the database cannot be used (a newer podsweep's)
     │    └── RuntimeSetupError  no pod can run as asked here (no compiler for the
     │                           sandbox, a volume's source missing)
     └── EngineError         the cluster engine failed a command                  exit 8
          └── SlurmError     a Slurm command failed or is missing

``podsweep.hpo`` has a root of its own, :class:`podsweep.hpo.HPOError`, since it must not
import the rest of podsweep; the CLI treats it like a PodsweepError. The server maps each
class to an HTTP status (:data:`HTTP_STATUS`) and the client maps it back.

A full disk (or an exhausted quota) surfaces as an OSError (ENOSPC, EDQUOT) or as SQLite's
"database or disk is full"; :func:`is_disk_full` recognises all of them, and the store, the
server and the CLI turn them into :class:`DiskFull` (HTTP 507), one line, nothing changed.
"""

from __future__ import annotations

import errno
from typing import Optional


class PodsweepError(Exception):
    """Root of podsweep's errors."""

    exit_code = 1


class UsageError(PodsweepError):
    """The user asked for something that cannot be done as asked."""

    exit_code = 2


class Conflict(UsageError):
    """A name that is already taken."""


class NotFound(PodsweepError):
    exit_code = 3


class Unauthorized(PodsweepError):
    exit_code = 4


class Forbidden(PodsweepError):
    exit_code = 4


class Unavailable(PodsweepError):
    exit_code = 5


class TooManyRequests(Unavailable):
    """Refused for now, not for good: asked again after ``retry_after`` seconds, it may pass
    (HTTP 429 with a ``Retry-After`` header)."""

    def __init__(self, message: str, retry_after: int = 1) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class DiskFull(PodsweepError):
    """No space left on the disk (or quota) the control plane writes to; nothing changed."""

    exit_code = 6


class SetupError(PodsweepError):
    """This machine, or the control plane's state, cannot do what was asked as it is set
    up: an administrator's fix, not the user's input (HTTP 500)."""

    exit_code = 7


class StoreError(SetupError):
    """The database cannot be used (e.g. it was written by a newer podsweep)."""


class RuntimeSetupError(SetupError):
    """This machine cannot run a pod as asked: no compiler for the sandbox, a volume's
    source absent, a pod directory already taken."""


class EngineError(PodsweepError):
    """The cluster engine (Slurm, Kubernetes) failed a command or cannot be reached: the
    control plane is well, what it drives is not (HTTP 502)."""

    exit_code = 8


class SlurmError(EngineError):
    """A Slurm command failed or is missing."""


_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})
_SQLITE_FULL = 13            # SQLITE_FULL, as sqlite3.Error.sqlite_errorcode gives it


def is_disk_full(exc: BaseException | None) -> bool:
    """Whether ``exc``, or an exception it was raised from, says the disk is full."""
    seen = 0
    while exc is not None and seen < 8:      # the chain of causes, cut short if circular
        if isinstance(exc, DiskFull):
            return True
        if isinstance(exc, OSError) and exc.errno in _FULL_ERRNOS:
            return True
        # sqlite3's errors, without importing sqlite3 into every CLI command
        if getattr(exc, "sqlite_errorcode", None) == _SQLITE_FULL or \
                "database or disk is full" in str(exc):
            return True
        exc = exc.__cause__ or exc.__context__
        seen += 1
    return False


def disk_full(where: object) -> DiskFull:
    """The one line a full disk gets, naming the directory that could not be written."""
    return DiskFull(f"no space left on the disk holding {where}: nothing was changed; free "
                    f"some space and try again")


HTTP_STATUS: dict[type[PodsweepError], int] = {
    Conflict: 409, UsageError: 400, NotFound: 404, Unauthorized: 401, Forbidden: 403,
    TooManyRequests: 429, Unavailable: 503, DiskFull: 507, EngineError: 502,
    PodsweepError: 500, SetupError: 500,     # a bare 500 reads back as the root
}

BY_NAME: dict[str, type[PodsweepError]] = {
    cls.__name__: cls for cls in (
        PodsweepError, UsageError, Conflict, NotFound, Unauthorized, Forbidden, Unavailable,
        TooManyRequests, DiskFull, SetupError, StoreError, RuntimeSetupError, EngineError,
        SlurmError)
}
"""Every class by the name the API gives with its status (``"error"``), so that the CLI
raises, and exits with, what the server raised."""


def http_status(error: PodsweepError) -> int:
    for cls in type(error).__mro__:
        if cls in HTTP_STATUS:
            return HTTP_STATUS[cls]
    return 500


def from_http(status: int, message: str, kind: Optional[str] = None) -> PodsweepError:
    """The error an API answer stands for: the class it names, else one by its status."""
    named = BY_NAME.get(kind or "")
    if named is not None and named is not TooManyRequests:
        return named(message)
    if status in (413, 422):   # too big, or refused by the API's schema: bad input too
        return UsageError(message)
    for cls, code in HTTP_STATUS.items():
        if code == status:
            return cls(message)
    return PodsweepError(message)
