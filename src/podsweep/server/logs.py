"""Reading pods' log files: the tail of a file without reading all of it."""

from __future__ import annotations

from pathlib import Path

MAX_TAIL_BYTES = 1 << 20
"""The most a tail reads, whatever the lines: a log of progress bars (\\r, no \\n) is one
line of many megabytes, and the control plane reads on its only thread."""


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
