"""What of the machine a user may see: the one filter the API and the web UI share.

An admin sees every GPU with the pod that holds it and that pod's project. A user sees the
same GPUs, but a GPU held by a pod of a project they are not a member of shows only that it
is in use: a pod's name is its job's name, and a job's name can say what another team works
on. Every engine's :meth:`~podsweep.cluster.base.Cluster.info` names each holder's project,
so the filter needs no engine of its own.
"""

from __future__ import annotations

from typing import Any

from ..store import User


def visible_gpus(user: User, gpus: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each GPU as ``user`` may see it: index, name, in_use, and pod and project (None for
    an idle GPU, or one held by a project the user is not a member of)."""
    shown = []
    for gpu in gpus:
        in_use = gpu.get("pod") is not None
        mine = user.admin or gpu.get("project") in user.projects
        shown.append({"index": gpu["index"], "name": gpu["name"], "in_use": in_use,
                      "pod": gpu.get("pod") if mine else None,
                      "project": gpu.get("project") if mine else None})
    return shown
