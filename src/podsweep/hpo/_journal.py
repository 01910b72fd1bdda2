"""The journal file: whole-line appends under a POSIX lock, incremental reads.

``hpo.jsonl`` is an append-only sequence of JSON objects, one per line. Writers take
``fcntl.lockf`` on ``hpo.jsonl.lock`` beside it, which

- serialises them across processes and hosts (NFS forwards POSIX locks to the server),
- makes an NFS client revalidate its cache, so a writer sees every earlier append, and
- dies with its process: a writer killed while holding it stalls nobody.

POSIX locks belong to a process, not a descriptor, and closing *any* descriptor of the
lock file drops them all; so a process opens each journal once (:meth:`Journal.open`) and
adds a thread lock so that its own threads take turns.

Under the lock a writer first repairs the tail (a writer that died mid-write may have left
a line without its newline: it is cut off), then reads only the bytes appended since its
last call, then writes its lines with one ``pwrite`` at the end. Readers take no lock: they
consume complete lines only and leave a torn last line for later.
"""

from __future__ import annotations

import fcntl
import json
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, ClassVar, Dict, List, Tuple

Event = Dict[str, Any]

_CHUNK = 1 << 20


@dataclass
class Cursor:
    """How far one reader of a journal has folded it, and what that cost.

    The counters make a call's cost observable: tests assert on them, not on time.
    """

    offset: int = 0
    calls: int = 0
    bytes_read: int = 0
    events_read: int = 0
    bad_lines: int = 0
    repairs: int = 0
    last_call_bytes_read: int = 0


def encode(events: List[Event]) -> bytes:
    return b"".join(
        json.dumps(e, separators=(",", ":"), allow_nan=False).encode() + b"\n" for e in events
    )


def read_lines(fd: int, offset: int, end: int) -> Tuple[List[Event], int, int]:
    """Parse the complete lines in [offset, end) of ``fd``.

    Returns (events, offset after the last complete line, number of lines that did not
    parse). A trailing line without its newline is not consumed.
    """
    events: List[Event] = []
    bad = 0
    pending = b""
    pos = offset
    consumed = offset
    while pos < end:
        chunk = os.pread(fd, min(_CHUNK, end - pos), pos)
        if not chunk:
            break
        pos += len(chunk)
        data = pending + chunk
        lines = data.split(b"\n")
        pending = lines.pop()
        for line in lines:
            consumed += len(line) + 1
            if not line.strip():
                continue
            try:
                event = json.loads(line)
            except ValueError:
                bad += 1
                continue
            if isinstance(event, dict):
                events.append(event)
            else:
                bad += 1
    return events, consumed, bad


class Journal:
    """One process's handle on one journal file. Use :meth:`open`, not the constructor."""

    _registry: ClassVar[Dict[str, Journal]] = {}
    _registry_lock: ClassVar[threading.Lock] = threading.Lock()

    def __init__(self, path: Path) -> None:
        self.path = path
        self.lock_path = path.with_name(path.name + ".lock")
        self._fd = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o666)
        self._lock_fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT
                                | getattr(os, "O_CLOEXEC", 0), 0o666)
        self._thread_lock = threading.Lock()

    @classmethod
    def open(cls, path: Path) -> Journal:
        """The process's one handle on ``path`` (created, with its lock file, if missing)."""
        key = os.path.realpath(path)
        with cls._registry_lock:
            journal = cls._registry.get(key)
            if journal is None:
                journal = cls._registry[key] = cls(Path(key))
            return journal

    @classmethod
    def _after_fork_in_child(cls) -> None:
        # A thread of the parent may have held a thread lock at fork time; the child's
        # copies would stay locked forever. Locks taken with lockf are not inherited.
        cls._registry_lock = threading.Lock()
        for journal in cls._registry.values():
            journal._thread_lock = threading.Lock()

    def transact(self, cursor: Cursor,
                 decide: Callable[[List[Event]], List[Event]]) -> List[Event]:
        """Fold in what others appended, then append what ``decide`` returns, atomically.

        ``decide`` gets the events appended since ``cursor`` (in file order) and returns the
        events to append; it runs while the lock is held, so what it saw is still the whole
        journal when its events land. If it raises, nothing is written. The cursor then
        stands after the appended events.
        """
        with self._thread_lock:
            fcntl.lockf(self._lock_fd, fcntl.LOCK_EX)
            try:
                size = self._repair_tail(cursor)
                before = cursor.offset
                events, cursor.offset, bad = read_lines(self._fd, before, size)
                read = cursor.offset - before
                cursor.calls += 1
                cursor.bytes_read += read
                cursor.last_call_bytes_read = read
                cursor.events_read += len(events)
                cursor.bad_lines += bad
                out = decide(events)
                if out:
                    data = encode(out)
                    self._write_at(data, size)
                    cursor.offset = size + len(data)
                return out
            finally:
                fcntl.lockf(self._lock_fd, fcntl.LOCK_UN)

    def _write_at(self, data: bytes, offset: int) -> None:
        # pwrite at the size seen under the lock rather than O_APPEND, which NFS emulates.
        view = memoryview(data)
        while view:
            n = os.pwrite(self._fd, view, offset)
            view, offset = view[n:], offset + n

    def _repair_tail(self, cursor: Cursor) -> int:
        """Cut a torn last line left by a writer that died mid-write; return the size."""
        size = os.fstat(self._fd).st_size
        if size == 0 or os.pread(self._fd, 1, size - 1) == b"\n":
            return size
        cut = size
        while cut > 0:
            start = max(0, cut - 4096)
            block = os.pread(self._fd, cut - start, start)
            nl = block.rfind(b"\n")
            if nl >= 0:
                cut = start + nl + 1
                break
            cut = start
        os.ftruncate(self._fd, cut)
        cursor.repairs += 1
        cursor.offset = min(cursor.offset, cut)
        return cut


os.register_at_fork(after_in_child=Journal._after_fork_in_child)


@dataclass
class Reader:
    """Reads a journal that others are writing, without taking its lock.

    Each :meth:`read_new` returns only the complete lines appended since the last one.
    """

    path: Path
    offset: int = 0
    bad_lines: int = field(default=0)

    def read_new(self) -> List[Event]:
        fd = os.open(self.path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
        try:
            size = os.fstat(fd).st_size
            events, self.offset, bad = read_lines(fd, self.offset, size)
        finally:
            os.close(fd)
        self.bad_lines += bad
        return events
