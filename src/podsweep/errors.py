"""Errors raised by podsweep outside its HPO library.

::

    PodsweepError            the root: the CLI prints its message as one line   exit 1
     ├── UsageError          bad input; nothing was changed                       exit 2
     │    └── Conflict       the name is taken                                    exit 2
     ├── NotFound            no such project, job, pod or user                    exit 3
     ├── Unauthorized        no token, or a wrong one                             exit 4
     ├── Forbidden           the user may not see or touch that                   exit 4
     └── Unavailable         the control plane is not running or not reachable    exit 5
          └── TooManyRequests  refused for now (logins); retry_after seconds       exit 5

``podsweep.hpo`` has a root of its own, :class:`podsweep.hpo.HPOError`, since it must not
import the rest of podsweep; the CLI treats it like a PodsweepError. The server maps each
class to an HTTP status (:data:`HTTP_STATUS`) and the client maps it back.
"""

from __future__ import annotations


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


HTTP_STATUS: dict[type[PodsweepError], int] = {
    Conflict: 409, UsageError: 400, NotFound: 404, Unauthorized: 401, Forbidden: 403,
    TooManyRequests: 429, Unavailable: 503, PodsweepError: 500,
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
