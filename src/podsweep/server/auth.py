"""Passwords and browser sessions for the web UI.

Passwords are hashed with scrypt (memory-hard, in the standard library); a session is a
random secret in an HttpOnly, SameSite=Strict cookie, stored only as a hash, with a CSRF
token of its own that every form and htmx request carries back. Repeated failed logins for
a name are answered ever more slowly.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import secrets
import time

SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1
SESSION_COOKIE = "podsweep_session"
SESSION_LIFETIME = 12 * 3600.0
FREE_FAILURES = 3          # failed logins for a name before answers slow down
FAILURE_WINDOW = 300.0     # seconds a failure is remembered
MAX_DELAY = 5.0


def hash_password(password: str) -> str:
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P)
    return f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${salt.hex()}${digest.hex()}"


_DUMMY = None   # a hash to check against when the user does not exist


def check_password(password: str, stored: str | None) -> bool:
    """Whether ``password`` matches; as slow for an unknown user as for a known one, so
    that the time of the answer does not tell which names exist."""
    global _DUMMY
    if not stored or not stored.startswith("scrypt$"):
        if _DUMMY is None:
            _DUMMY = hash_password(secrets.token_urlsafe(8))
        check_password(password, _DUMMY)
        return False
    _, n, r, p, salt, digest = stored.split("$")
    candidate = hashlib.scrypt(password.encode(), salt=bytes.fromhex(salt), n=int(n),
                               r=int(r), p=int(p))
    return hmac.compare_digest(candidate.hex(), digest)


def new_password() -> str:
    return secrets.token_urlsafe(12)


class LoginThrottle:
    """Remembers failed logins per name; past a few, each answer waits a little longer."""

    def __init__(self) -> None:
        self._failures: dict[str, list[float]] = {}

    def _recent(self, name: str) -> list[float]:
        now = time.monotonic()
        if len(self._failures) > 10_000:     # names tried once and long ago: forget them
            self._failures = {k: v for k, v in self._failures.items()
                              if v and now - v[-1] < FAILURE_WINDOW}
        recent = [t for t in self._failures.get(name, []) if now - t < FAILURE_WINDOW]
        self._failures[name] = recent
        return recent

    async def delay(self, name: str) -> None:
        excess = len(self._recent(name)) - FREE_FAILURES
        if excess > 0:
            await asyncio.sleep(min(MAX_DELAY, 0.5 * 2 ** (excess - 1)))

    def failed(self, name: str) -> None:
        self._recent(name).append(time.monotonic())

    def succeeded(self, name: str) -> None:
        self._failures.pop(name, None)
