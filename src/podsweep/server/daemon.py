"""The control plane process: ``python -m podsweep.server --home DIR``.

It binds 127.0.0.1 (a free port unless one is given), opens the store, adopts the pods a
previous run left running, and serves the API. Once it listens it writes
``<home>/server.json`` (pid, process start time, url) for ``podsweep up``/``status`` to find
it; the start time makes the live-process check immune to pid reuse.

On the very first start (no users yet) it creates the ``admin`` user and writes its token to
``<home>/credentials.json``, readable by the owner alone, which logs the CLI in.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import socket
import sqlite3
import sys
import time
from pathlib import Path
from typing import Any

import uvicorn

from ..cluster import open_cluster
from ..errors import PodsweepError, UsageError, disk_full, is_disk_full
from ..homedir import REFUSAL, process_start_time, read_server, secure_home, write_private
from ..store import Store
from .app import create_app
from .auth import hash_password, new_password

log = logging.getLogger("podsweep.server")


def settings_of(home: Path) -> dict[str, Any]:
    """``<home>/config.json``: which cluster, and its settings (``podsweep up`` writes it)."""
    config = home / "config.json"
    settings: dict[str, Any] = json.loads(config.read_text()) if config.exists() else {}
    return settings


ENGINE_FILE = "engine"
"""``<home>/engine``: the cluster the last control plane of this home ran on."""

def check_engine(home: Path, store: Store, kind: str) -> None:
    """Refuse to run a home's unfinished jobs on another engine than the one they run on.

    The local cluster's supervisors and a Slurm's arrays go on while no control plane runs;
    another engine would neither see nor stop them, and would take the jobs for lost. A
    Kubernetes cluster keeps its jobs in its API server, so its homes hold none.
    """
    marker = home / ENGINE_FILE
    previous = marker.read_text().strip() if marker.exists() else "local"
    if previous != kind:
        unfinished = store.jobs(include_done=False)
        if unfinished:
            names = ", ".join(f"{j.project}/{j.name}" for j in unfinished[:3])
            more = f" and {len(unfinished) - 3} more" if len(unfinished) > 3 else ""
            raise UsageError(f"this home has {len(unfinished)} unfinished job(s) on the "
                             f"{previous} cluster ({names}{more}); podsweep up --cluster "
                             f"{previous} and delete them (or let them end) before moving "
                             f"to {kind}")
    if previous != kind or not marker.exists():   # not rewritten: a full disk would empty it
        marker.write_text(kind + "\n")


async def serve(home: Path, port: int) -> None:
    loop = asyncio.get_running_loop()
    secure_home(home)           # refuses another user's home before opening anything in it
    store = Store(home / "podsweep.db")
    if not store.users():
        token = store.create_user("admin", admin=True)
        password = new_password()
        store.set_password("admin", hash_password(password))
        write_private(home / "credentials.json", {"user": "admin", "token": token})
        # podsweep up prints it once, then removes the file
        write_private(home / "admin-password.json", {"user": "admin", "password": password})
        log.info("created the admin user")
    settings = settings_of(home)
    check_engine(home, store, settings.get("cluster") or "local")
    secure_home(home)           # the files just made (the database, its WAL): owner-only too
    cluster = open_cluster(home, store, loop, settings)
    cluster.recover()
    info = cluster.info()
    gpus = info.gpus
    app = create_app(cluster, store)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    sock.listen(128)
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off")
    server = uvicorn.Server(config)
    pid = os.getpid()
    write_private(home / "server.json", {"pid": pid, "start_time": process_start_time(pid),
                                         "url": url, "started": time.time(),
                                         "gpus": len(gpus), "cpus": info.cpus,
                                         "cluster": settings.get("cluster") or "local"})
    log.info("serving %s with %d GPU(s)", url, len(gpus))
    try:
        await server.serve(sockets=[sock])
    finally:
        cluster.shutdown()
        store.close()
        record = read_server(home)
        if record is None or record.get("pid") == pid:
            (home / "server.json").unlink(missing_ok=True)
        log.info("stopped")


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m podsweep.server")
    parser.add_argument("--home", required=True, type=Path)
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        try:
            asyncio.run(serve(args.home, args.port))
        except (OSError, sqlite3.Error) as exc:
            if not is_disk_full(exc):
                raise
            # one line, and an exit code that says it when the log has no room for the line
            raise disk_full(args.home) from None
    except PodsweepError as exc:
        log.error("%s%s", REFUSAL, exc)
        sys.exit(exc.exit_code)


if __name__ == "__main__":
    main()
