"""The local control plane's home directory: how its files are found and written.

``<home>/server.json`` says which process serves which URL; ``credentials.json`` holds the
CLI's token (owner-only). Kept free of heavy imports: every CLI command reads these.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from .errors import UsageError

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


def secure_home(home: Path) -> None:
    """Make the home private to its owner: the directory 0700, its files closed to group
    and others (0600).

    Run by every ``podsweep up`` and by the control plane as it starts, so that a home made
    by an older podsweep, or loosened by hand, is closed again: it holds the database (with
    password and token hashes), the admin's credentials and the pods' environments. The
    pods' own directories below it are left as they are; the home's 0700 already shuts
    everyone else out of them. A home owned by another user is refused: its owner could read
    what this one writes, or have planted what this one runs.

    Raises UsageError (one line) for a home owned by someone else or whose modes cannot be
    changed.
    """
    home.mkdir(mode=0o700, parents=True, exist_ok=True)
    me = os.geteuid()
    info = home.lstat()
    if info.st_uid != me:
        raise UsageError(f"the podsweep home {home} belongs to {_user(info.st_uid)}, not to "
                         f"you ({_user(me)}); use a home of your own (PODSWEEP_HOME)")
    try:
        if info.st_mode & 0o777 != 0o700:
            home.chmod(0o700)
        with os.scandir(home) as entries:
            for entry in entries:
                # a symlink or a directory (the pods') is left as it is
                if not entry.is_file(follow_symlinks=False):
                    continue
                st = entry.stat(follow_symlinks=False)
                if st.st_uid != me:
                    raise UsageError(f"{entry.path} in the podsweep home belongs to "
                                     f"{_user(st.st_uid)}, not to you ({_user(me)})")
                if st.st_mode & 0o077:          # group or others may read or write it
                    os.chmod(entry.path, st.st_mode & 0o700)
    except PermissionError as exc:
        raise UsageError(f"cannot make the podsweep home {home} private: {exc.strerror}: "
                         f"{exc.filename}") from None


def _user(uid: int) -> str:
    import pwd

    try:
        return f"{pwd.getpwuid(uid).pw_name} (uid {uid})"
    except KeyError:
        return f"uid {uid}"


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
