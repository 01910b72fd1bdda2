"""``podsweep up``, ``down``, ``status``: the local control plane's life."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from typing import Annotated, Optional

import typer

from ..cluster import ENGINES
from ..errors import PodsweepError, UsageError
from ..homedir import REFUSAL, process_start_time, read_server
from .common import OutputOption, client, emit, home, read_json
from .printers import Output, table

START_TIMEOUT = 30.0
MAX_VIRTUAL_GPUS = 4096     # the control plane keeps one record per GPU: no 10**30 of them


def up(gpus: Annotated[Optional[int], typer.Option(
        "--gpus", help="run with N virtual GPUs instead of the ones NVML finds (local only)")]
        = None,
       cluster: Annotated[Optional[str], typer.Option(
        "--cluster", help=f"where pods run: {', '.join(ENGINES)} (default: as last time, "
                          f"or local)")] = None,
       kubeconfig: Annotated[Optional[str], typer.Option(
        "--kubeconfig", help="kubernetes: the kubeconfig (default: $KUBECONFIG, "
                             "~/.kube/config)")] = None,
       context: Annotated[Optional[str], typer.Option(
        "--context", help="kubernetes: the kubeconfig's context (default: its current)")]
        = None) -> None:
    """Start the control plane in the background (does nothing if it runs)."""
    if gpus is not None and not 0 <= gpus <= MAX_VIRTUAL_GPUS:
        raise UsageError(f"--gpus must be from 0 to {MAX_VIRTUAL_GPUS}, got {gpus}")
    if cluster is not None and cluster not in ENGINES:
        raise UsageError(f"unknown cluster {cluster!r} (one of: {', '.join(ENGINES)})")
    where = home()
    # private: it holds the admin's token, the database and the pods' environments
    where.mkdir(mode=0o700, parents=True, exist_ok=True)
    record = read_server(where)
    if record is not None:
        if gpus is not None and gpus != record.get("gpus"):
            raise UsageError(f"podsweep is already running with {record.get('gpus')} GPU(s); "
                             f"podsweep down first to change that")
        running = record.get("cluster", "local")
        if cluster is not None and cluster != running:
            raise UsageError(f"podsweep is already running on the {running} cluster; "
                             f"podsweep down first to change that")
        typer.echo(f"podsweep is already running at {record['url']} (pid {record['pid']})")
        return
    config = where / "config.json"
    settings = read_json(config)
    if cluster is not None:
        settings["cluster"] = cluster
    if gpus is not None:
        if settings.get("cluster", "local") != "local":
            raise UsageError(f"--gpus is for the local cluster; the {settings['cluster']} "
                             f"cluster has the GPUs its engine manages")
        settings["gpus"] = gpus
    for key, value in (("kubeconfig", kubeconfig), ("context", context)):
        if value is not None:
            if settings.get("cluster") != "kubernetes":
                raise UsageError(f"--{key} is for the kubernetes cluster")
            settings[key] = os.path.abspath(value) if key == "kubeconfig" else value
    before = config.read_text() if config.exists() else None
    config.write_text(json.dumps(settings))
    log_path = where / "server.log"
    with open(log_path, "ab") as log:
        proc = subprocess.Popen([sys.executable, "-m", "podsweep.server", "--home", str(where)],
                                stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                start_new_session=True)
    deadline = time.monotonic() + START_TIMEOUT
    while (record := read_server(where)) is None or record["pid"] != proc.pid:
        if proc.poll() is not None or time.monotonic() > deadline:
            tail = log_path.read_text(errors="replace").splitlines()[-10:]
            if before is not None:        # the next up runs as the last one that worked
                config.write_text(before)
            refusal = tail[-1].partition(REFUSAL)[2] if tail else ""
            if proc.returncode == UsageError.exit_code and refusal:
                raise UsageError(refusal)
            raise PodsweepError("the control plane did not start; its log says:\n  "
                                + "\n  ".join(tail))
        time.sleep(0.05)
    count = record.get("gpus", 0)
    engine = settings.get("cluster", "local")
    kind = "virtual " if engine == "local" and settings.get("gpus") is not None else ""
    typer.echo(f"podsweep is up at {record['url']} on the {engine} cluster with {count} "
               f"{kind}GPU(s) (state and logs in {where})")
    typer.echo(f"Web UI: {record['url']}/")
    first = where / "admin-password.json"
    password = read_json(first).get("password")
    if password:
        typer.echo(f"  log in as admin with the password {password} (shown once: change it "
                   f"on the Account page)")
        first.unlink()
    credentials = read_json(where / "credentials.json")
    if credentials.get("user"):
        typer.echo(f"Logged in as {credentials['user']} "
                   f"(token in {where / 'credentials.json'}, readable by you alone)")


def down() -> None:
    """Stop the control plane. Running pods go on; the next podsweep up adopts them."""
    where = home()
    record = read_server(where)
    if record is None:
        typer.echo("podsweep is not running")
        return
    pid = int(record["pid"])
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 15
    while process_start_time(pid) == record["start_time"]:
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
        time.sleep(0.05)
    typer.echo(f"podsweep stopped (pid {pid})")


def status(output: Annotated[Output, OutputOption] = Output.table) -> None:
    """Where the control plane runs, as whom you are logged in, and its GPUs."""
    record = read_server(home())
    if record is None:
        typer.echo("podsweep is not running (start it with podsweep up)")
        raise typer.Exit(1)
    data = client().get("/status")
    data.update(url=record["url"], pid=record["pid"], home=str(home()))
    rows = [[g["index"], g["name"], g["pod"] or "-"] for g in data["gpus"]]
    text = (f"podsweep {data['version']} ({data['cluster']}) at {data['url']}, pid "
            f"{data['pid']}\nweb UI: {data['url']}/\nhome: {data['home']}\n"
            f"logged in as {data['user']}"
            f"{' (admin)' if data['admin'] else ''}\n\n"
            + (table(["gpu", "name", "pod"], rows) if rows else "no GPUs"))
    emit(output, data, text)
