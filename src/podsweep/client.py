"""The API client the CLI uses: one place that turns HTTP answers into podsweep errors."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from typing import Any


def _import_httpx() -> None:
    """Import httpx without its own command line: ~40 ms of every CLI call that talks to the API.

    httpx's package imports ``httpx._main`` (click, rich, pygments) whenever they are
    installed, as they are beside typer and uvicorn; podsweep never runs that command. Marked
    missing for this one import, httpx defines its stand-in ``main`` instead; ``httpx._main``
    stays importable afterwards.
    """
    if "httpx" in sys.modules or "httpx._main" in sys.modules:
        return
    sys.modules["httpx._main"] = None  # type: ignore[assignment]  # None: "not installed"
    try:
        import httpx  # noqa: F401
    except ImportError:
        pass        # an httpx that cannot do without it: imported whole below
    finally:
        del sys.modules["httpx._main"]


_import_httpx()

import httpx  # noqa: E402

from .errors import PodsweepError, Unavailable, from_http  # noqa: E402


class Client:
    def __init__(self, url: str, token: str | None, timeout: float = 120.0) -> None:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.url = url
        self.http = httpx.Client(base_url=url, headers=headers, timeout=timeout)

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            response = self.http.request(method, f"/api/v1{path}", **kwargs)
        except httpx.TransportError as exc:
            raise Unavailable(f"cannot reach the podsweep control plane at {self.url} ({exc}); "
                              f"start it with podsweep up") from None
        if response.status_code >= 400:
            raise self._error(response)
        if response.headers.get("content-type", "").startswith("application/json"):
            return response.json()
        return response.text

    @staticmethod
    def _error(response: httpx.Response) -> PodsweepError:
        kind = None
        try:
            body = response.json()
            detail, kind = body.get("detail", response.text), body.get("error")
        except (ValueError, AttributeError):
            detail = response.text
        if isinstance(detail, list):      # a validation error from the API's schema
            detail = "; ".join(f"{'.'.join(map(str, d.get('loc', [])[1:]))}: {d.get('msg')}"
                               for d in detail)
        return from_http(response.status_code, str(detail),
                         kind if isinstance(kind, str) else None)

    def get(self, path: str, **params: Any) -> Any:
        return self.request("GET", path, params={k: v for k, v in params.items()
                                                 if v is not None})

    def post(self, path: str, body: dict[str, Any]) -> Any:
        return self.request("POST", path, json=body)

    def put(self, path: str, body: dict[str, Any]) -> Any:
        return self.request("PUT", path, json=body)

    def delete(self, path: str) -> Any:
        # returns once the job's pods are gone, which may take their whole grace period
        return self.request("DELETE", path, timeout=None)

    def stream(self, path: str, **params: Any) -> Iterator[bytes]:
        try:
            with self.http.stream("GET", f"/api/v1{path}", params=params,
                                  timeout=None) as response:
                if response.status_code >= 400:
                    response.read()
                    raise self._error(response)
                yield from response.iter_raw()
        except httpx.TransportError as exc:
            raise Unavailable(f"lost the control plane at {self.url} ({exc})") from None
