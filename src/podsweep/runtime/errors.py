"""The runtime's one error, apart so that every module of the runtime can raise it."""

from __future__ import annotations

from ..errors import PodsweepError


class RuntimeSetupError(PodsweepError):
    """This machine cannot run a pod as asked: no compiler for the sandbox, a volume's
    source absent, a pod directory already taken."""
