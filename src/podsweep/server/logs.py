"""Reading pods' log files: the tail of a file without reading all of it."""

from __future__ import annotations

from pathlib import Path


def tail_lines(path: Path, n: int) -> bytes:
    """The last ``n`` lines of a file, reading backwards from its end (not the whole file)."""
    with open(path, "rb") as f:
        f.seek(0, 2)
        pos = f.tell()
        data = b""
        while pos > 0 and data.count(b"\n") <= n:
            step = min(65536, pos)
            pos -= step
            f.seek(pos)
            data = f.read(step) + data
        lines = data.splitlines(keepends=True)
        return b"".join(lines[-n:]) if n > 0 else b""
