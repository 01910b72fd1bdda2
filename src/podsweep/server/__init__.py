"""The control plane's server: the HTTP API in front of a Cluster, run as a daemon."""

from .app import create_app

__all__ = ["create_app"]
