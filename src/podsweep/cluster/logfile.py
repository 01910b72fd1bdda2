"""Pods' logs kept as files (the local cluster, Slurm): a tail read from the end, and a
follower that streams what a running pod adds.

Kubernetes serves logs through its API instead; every cluster hands the server the same
thing, an async iterator of byte chunks (:meth:`~podsweep.cluster.base.Cluster.pod_log`).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path

MAX_TAIL_BYTES = 1 << 20
"""The most a tail (or one chunk) reads, whatever the lines: a log of progress bars (\\r, no
\\n) is one line of many megabytes, and the control plane reads on its only thread."""

FOLLOW_INTERVAL = 0.1
"""How often a follower looks for new output: a person reads it, no scheduling waits on it."""


def tail_lines(path: Path, n: int, limit: int = MAX_TAIL_BYTES) -> bytes:
    """The last ``n`` lines of a file (at most its last ``limit`` bytes), read from the end."""
    if n <= 0:
        return b""
    with open(path, "rb") as f:
        f.seek(0, 2)
        pos = f.tell()
        chunks: list[bytes] = []
        newlines = 0
        while pos > 0 and newlines <= n and sum(map(len, chunks)) < limit:
            step = min(65536, pos)
            pos -= step
            f.seek(pos)
            chunk = f.read(step)
            chunks.append(chunk)
            newlines += chunk.count(b"\n")
    data = b"".join(reversed(chunks))[-limit:]
    return b"".join(data.splitlines(keepends=True)[-n:])


async def follow_file(path: Path, tail: int | None, follow: bool,
                      running: Callable[[], bool]) -> AsyncIterator[bytes]:
    """The file from its start (or its last ``tail`` lines) in chunks of at most 1 MiB, then,
    with ``follow``, what is appended until ``running()`` says the writer has ended."""
    offset = 0
    if tail is not None and path.exists():
        yield tail_lines(path, tail)
        offset = path.stat().st_size
    while True:
        done = not running() if follow else True
        if path.exists() and path.stat().st_size > offset:
            with open(path, "rb") as f:
                f.seek(offset)
                chunk = f.read(MAX_TAIL_BYTES)
            offset += len(chunk)
            yield chunk
        elif done:
            return
        else:
            await asyncio.sleep(FOLLOW_INTERVAL)
