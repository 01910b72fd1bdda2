"""Times as people read them in a table."""

from __future__ import annotations

import time


def age(since: float | None, until: float | None = None) -> str:
    """kubectl's short ages: 42s, 5m, 3h, 2d ("-" for no time)."""
    if since is None:
        return "-"
    seconds = max(0, int((until or time.time()) - since))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"
