"""Fixtures shared by test folders: the container image the local cluster's ``-i`` tests run
(built here once per session: tests/containers.py)."""

from .containers import image

__all__ = ["image"]
