"""The calls to the API server: the official client, its answers as plain data, its failures
as podsweep's errors, and the worker threads the calls wait in.

Every call has a short timeout (:data:`REQUEST_TIMEOUT`), so an unreachable API server fails
a request with one line within seconds; a followed log waits for a day
(:data:`FOLLOW_TIMEOUT`).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import json
from collections.abc import Callable
from typing import Any, TypeVar

from ...errors import Conflict, Forbidden, NotFound, PodsweepError, Unavailable, UsageError
from ..base import BlockingViews
from .objects import KUEUE_API

T = TypeVar("T")

REQUEST_TIMEOUT = (3.0, 10.0)
"""Seconds to connect and to read, for every call but a followed log's."""

FOLLOW_TIMEOUT = (3.0, 24 * 3600.0)
"""A followed log may be silent for long (a training epoch): only a day of silence ends it."""

KUEUE_GROUP, _, KUEUE_VERSION = KUEUE_API.partition("/")


class ApiCalls(BlockingViews):
    """The client's APIs, and calls to them; every call blocks, so each runs in a worker
    thread of :attr:`_pool`: a view's whole (:meth:`off_loop`, as the server calls it), or
    each call of a coroutine (:meth:`_in_thread`)."""

    def __init__(self, api_client: Any, loop: asyncio.AbstractEventLoop) -> None:
        from kubernetes import client

        self.api = api_client
        self.loop = loop
        self.core = client.CoreV1Api(api_client)
        self.batch = client.BatchV1Api(api_client)
        self.custom = client.CustomObjectsApi(api_client)
        self._pool = concurrent.futures.ThreadPoolExecutor(
            max_workers=64, thread_name_prefix="podsweep-kubernetes")

    def _call(self, what: str, fn: Callable[..., Any], *args: Any,
              timeout: tuple[float, float] = REQUEST_TIMEOUT, **kwargs: Any) -> Any:
        """One API call; its JSON answer as plain data, its failure as podsweep's error."""
        from kubernetes.client.exceptions import ApiException

        try:
            response = fn(*args, _preload_content=False, _request_timeout=timeout, **kwargs)
        except ApiException as exc:
            raise api_error(what, exc) from exc
        except OSError as exc:
            raise Unavailable(f"cannot reach the Kubernetes API server to {what}: "
                              f"{exc}") from exc
        except Exception as exc:    # urllib3's errors are not OSErrors
            if type(exc).__module__.startswith("urllib3"):
                raise Unavailable(f"cannot reach the Kubernetes API server to {what}: "
                                  f"{exc}") from exc
            raise
        data = response.data
        return json.loads(data) if data else {}

    async def _in_thread(self, fn: Callable[..., Any], *args: Any) -> Any:
        return await self.loop.run_in_executor(self._pool, fn, *args)

    async def off_loop(self, call: Callable[[], T]) -> T:
        # the engine's own threads: shutdown cancels what still waits for one
        return await asyncio.get_running_loop().run_in_executor(self._pool, call)

    def _missing(self, what: str, fn: Callable[..., Any], *args: Any,
                 **kwargs: Any) -> dict[str, Any] | None:
        """An object, or None if there is none."""
        try:
            found: dict[str, Any] = self._call(what, fn, *args, **kwargs)
            return found
        except NotFound:
            return None


def abort(response: Any) -> None:
    """Close a streamed response, waking a thread blocked reading it (urllib3 >= 2.3)."""
    with contextlib.suppress(Exception):
        getattr(response, "shutdown", response.close)()
    with contextlib.suppress(Exception):
        response.close()


def api_message(exc: Any) -> str:
    """The API server's one-line message in a failed call's Status body."""
    try:
        body = json.loads(exc.body or "{}")
        return str(body.get("message") or exc.reason)
    except (ValueError, AttributeError):
        return str(getattr(exc, "reason", exc))


def api_error(what: str, exc: Any) -> PodsweepError:
    """podsweep's error for a failed call, by the HTTP status the API server answered."""
    message = f"Kubernetes refused to {what}: {api_message(exc)}"
    status = getattr(exc, "status", None)
    if status == 404:
        return NotFound(message)
    if status == 409:
        return Conflict(message)
    if status in (401, 403):
        return Forbidden(message)
    if status in (400, 422):
        return UsageError(message)
    if status is None or status >= 500:
        return Unavailable(message)
    return PodsweepError(message)
