"""The runtime's one error, apart so that every module of the runtime can raise it.

It lives in :mod:`podsweep.errors`'s tree (a :class:`~podsweep.errors.SetupError`).
"""

from __future__ import annotations

from ..errors import RuntimeSetupError

__all__ = ["RuntimeSetupError"]
