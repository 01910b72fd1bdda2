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
     └── DiskFull            no space left where the control plane writes         exit 6

``podsweep.hpo`` has a root of its own, :class:`podsweep.hpo.HPOError`, since it must not
import the rest of podsweep; the CLI treats it like a PodsweepError. The server maps each
class to an HTTP status (:data:`HTTP_STATUS`) and the client maps it back.

A full disk (or an exhausted quota) surfaces as an OSError (ENOSPC, EDQUOT) or as SQLite's
"database or disk is full"; :func:`is_disk_full` recognises all of them, and the store, the
server and the CLI turn them into :class:`DiskFull` (HTTP 507), one line, nothing changed.
"""

from __future__ import annotations

import errno


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
    TooManyRequests: 429, Unavailable: 503, DiskFull: 507, PodsweepError: 500,
}


def http_status(error: PodsweepError) -> int:
    for cls in type(error).__mro__:
        if cls in HTTP_STATUS:
            return HTTP_STATUS[cls]
    return 500


def from_http(status: int, message: str) -> PodsweepError:
    if status in (413, 422):   # too big, or refused by the API's schema: bad input too
        return UsageError(message)
    for cls, code in HTTP_STATUS.items():
        if code == status:
            return cls(message)
    return PodsweepError(message)
