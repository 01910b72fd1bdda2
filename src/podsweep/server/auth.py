"""Passwords and browser sessions for the web UI.

Passwords are hashed with scrypt (memory-hard, in the standard library); a session is a
random secret in an HttpOnly, SameSite=Strict cookie, stored only as a hash, with a CSRF
token of its own that every form and htmx request carries back.

scrypt is slow on purpose, so the server never hashes on its event loop: it awaits
:func:`verify_password` and :func:`hash_password_async`, which run the hash in a pool of
at most :data:`HASH_THREADS` threads (hashlib releases the GIL while it hashes; the loop goes
on answering). How many logins are hashed at all is :mod:`.limits`' business.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import os
import secrets
from concurrent.futures import ThreadPoolExecutor

SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1
SESSION_COOKIE = "podsweep_session"
SESSION_LIFETIME = 12 * 3600.0
HASH_THREADS = 2
_pool: ThreadPoolExecutor | None = None


def _hash_pool() -> ThreadPoolExecutor:
    """The hashing threads, made at the first hash: two at most, and never every CPU, so
    that the event loop keeps one for itself. They run hashlib alone (no lock of ours, no
    Python object shared), so a Python supervisor forked meanwhile inherits nothing it
    could wait on."""
    global _pool
    if _pool is None:
        threads = max(1, min(HASH_THREADS, len(os.sched_getaffinity(0)) - 1))
        _pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="podsweep-scrypt")
    return _pool


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


async def verify_password(password: str, stored: str | None) -> bool:
    """:func:`check_password` in the hashing pool, off the event loop."""
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(_hash_pool(), check_password, password, stored)


async def hash_password_async(password: str) -> str:
    """:func:`hash_password` in the hashing pool, off the event loop."""
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(_hash_pool(), hash_password, password)
