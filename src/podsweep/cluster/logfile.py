"""Pods' logs kept as files (the local cluster, Slurm): a tail read from the end, and a
follower that streams what a running pod adds.

Kubernetes serves logs through its API instead; every cluster hands the server the same
thing, an async iterator of byte chunks (:meth:`~podsweep.cluster.base.Cluster.pod_log`).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
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


def rotated(path: Path) -> Path:
    """Where a pod's supervisor moves its log once it has reached half its limit."""
    return path.with_name(path.name + ".1")


def _chunks(path: Path, offset: int, inode: int | None = None) -> list[bytes]:
    """``path`` from ``offset`` on, in chunks of at most 1 MiB; nothing if it is not the
    file ``inode`` (when given) any more."""
    try:
        with open(path, "rb") as f:
            if inode is not None and os.fstat(f.fileno()).st_ino != inode:
                return []
            f.seek(offset)
            return list(iter(lambda: f.read(MAX_TAIL_BYTES), b""))
    except FileNotFoundError:
        return []


async def follow_file(path: Path, tail: int | None, follow: bool,
                      running: Callable[[], bool]) -> AsyncIterator[bytes]:
    """The file from its start (or its last ``tail`` lines) in chunks of at most 1 MiB, then,
    with ``follow``, what is appended until ``running()`` says the writer has ended.

    The log a supervisor moved to ``<path>.1`` (its size is capped) comes first, and a
    follower follows the move: the rest of the old file, then the new one from its start.
    """
    offset = 0
    inode: int | None = None
    older = rotated(path)
    if tail is not None and path.exists():
        data = tail_lines(path, tail)
        if data.count(b"\n") < tail and older.exists():
            data = tail_lines(older, tail - data.count(b"\n")) + data
        yield data
        first = path.stat()
        offset, inode = first.st_size, first.st_ino
    elif tail is None:
        for chunk in _chunks(older, 0):
            yield chunk
    while True:
        done = not running() if follow else True
        st: os.stat_result | None = None
        with contextlib.suppress(FileNotFoundError):
            st = path.stat()
        if st is not None and inode is not None and st.st_ino != inode:
            for chunk in _chunks(older, offset, inode):    # moved while we read it
                yield chunk
            offset = 0
        elif st is not None and st.st_size < offset:       # cut short in place
            offset = 0
        if st is not None:
            inode = st.st_ino
        if st is not None and st.st_size > offset:
            with open(path, "rb") as f:
                if os.fstat(f.fileno()).st_ino != inode:    # moved just now: next round
                    continue
                f.seek(offset)
                chunk = f.read(MAX_TAIL_BYTES)
            offset += len(chunk)
            yield chunk
        elif done:
            return
        else:
            await asyncio.sleep(FOLLOW_INTERVAL)
