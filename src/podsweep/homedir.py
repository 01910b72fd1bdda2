"""The local control plane's home directory: how its files are found and written.

``<home>/server.json`` says which process serves which URL; ``credentials.json`` holds the
CLI's token (owner-only). Kept free of heavy imports: every CLI command reads these.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

REFUSAL = "refused: "
"""How the control plane's last log line starts when it refuses to start (bad settings);
``podsweep up`` shows the rest as its one-line error."""


def process_start_time(pid: int) -> str | None:
    """The kernel's start time of ``pid`` (clock ticks since boot), or None if it is gone.

    Comparing it with the recorded one makes a live-process check immune to pid reuse.
    """
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return None if fields[0] == "Z" else fields[19]


def write_private(path: Path, data: dict[str, Any]) -> None:
    """Write JSON readable by the owner alone, atomically.

    On failure (a full disk) the old file is left as it was and no temporary file remains.
    """
    tmp = path.with_name(path.name + ".tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, indent=2)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def read_server(home: Path) -> dict[str, Any] | None:
    """The running server's record, or None when no live server owns this home."""
    try:
        record: dict[str, Any] = json.loads((home / "server.json").read_text())
    except (OSError, ValueError):
        return None
    if process_start_time(int(record.get("pid", 0))) != record.get("start_time"):
        return None
    return record
