"""``podsweep up``, ``down``, ``status``: the local control plane's life."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from typing import Annotated, Any, Optional

import typer

from ..errors import DiskFull, PodsweepError, UsageError, disk_full
from ..homedir import REFUSAL, process_start_time, read_server, secure_home, write_private
from ..model import CLUSTER_NAMES, format_gpus
from .common import OutputOption, client, emit, home, read_json
from .printers import Output, table

START_TIMEOUT = 30.0
MAX_VIRTUAL_GPUS = 4096     # the control plane keeps one record per GPU: no 10**30 of them
MAX_MACHINE_CPUS = 4096     # a reconcile's work is bounded by the machine's CPUs
_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
MIN_LOG_LIMIT = 64 << 10


def parse_size(text: str) -> int:
    """``100M`` (or ``100MiB``, ``512k``, ``1G``, ``4096``) in bytes; UsageError if not."""
    match = re.fullmatch(r"\s*(\d+)\s*([kKmMgG]?)(?:i?[bB])?\s*", text)
    if match is None:
        raise UsageError(f"--log-limit {text}: a size such as 100M, 512K or 1G")
    size = int(match[1]) * _UNITS[match[2].upper()]
    if size < MIN_LOG_LIMIT:
        raise UsageError(f"--log-limit {text}: at least {MIN_LOG_LIMIT >> 10}K")
    return size


def up(gpus: Annotated[Optional[int], typer.Option(
        "--gpus", help="run with N virtual GPUs instead of the ones NVML finds (local only)")]
        = None,
       cpus: Annotated[Optional[int], typer.Option(
        "--cpus", help="the CPUs pods share, N pods of --cpu 1 at most (local only; default: "
                       "as last time, or the CPUs this process may use)")] = None,
       cluster: Annotated[Optional[str], typer.Option(
        "--cluster", help=f"where pods run: {', '.join(CLUSTER_NAMES)} (default: as last time, "
                          f"or local)")] = None,
       kubeconfig: Annotated[Optional[str], typer.Option(
        "--kubeconfig", help="kubernetes: the kubeconfig (default: $KUBECONFIG, "
                             "~/.kube/config)")] = None,
       context: Annotated[Optional[str], typer.Option(
        "--context", help="kubernetes: the kubeconfig's context (default: its current)")]
        = None,
       log_limit: Annotated[Optional[str], typer.Option(
        "--log-limit", help="local: the most each pod's log keeps, its newest output "
                            "(e.g. 100M, the default; kept for later ups)")] = None,
       no_isolation: Annotated[bool, typer.Option(
        "--no-isolation", envvar="PODSWEEP_NO_ISOLATION",
        help="local: run pods without namespaces where they cannot be made (pods then "
             "can read the control plane's home; see docs/security.md)")] = False) -> None:
    """Start the control plane in the background (does nothing if it runs)."""
    if gpus is not None and not 0 <= gpus <= MAX_VIRTUAL_GPUS:
        raise UsageError(f"--gpus must be from 0 to {MAX_VIRTUAL_GPUS}, got {gpus}")
    if cpus is not None and not 1 <= cpus <= MAX_MACHINE_CPUS:
        raise UsageError(f"--cpus must be from 1 to {MAX_MACHINE_CPUS}, got {cpus}")
    if cluster is not None and cluster not in CLUSTER_NAMES:
        raise UsageError(f"unknown cluster {cluster!r} (one of: {', '.join(CLUSTER_NAMES)})")
    where = home()
    # private, on every up: it holds the admin's token, the database and the pods' environments
    secure_home(where)
    record = read_server(where)
    if record is not None:
        if gpus is not None and gpus != record.get("gpus"):
            raise UsageError(f"podsweep is already running with {record.get('gpus')} GPU(s); "
                             f"podsweep down first to change that")
        if cpus is not None and cpus != record.get("cpus"):
            raise UsageError(f"podsweep is already running with {record.get('cpus')} CPU(s) "
                             f"for pods; podsweep down first to change that")
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
    if log_limit is not None:
        if settings.get("cluster", "local") != "local":
            raise UsageError(f"--log-limit is for the local cluster; the "
                             f"{settings['cluster']} cluster keeps pods' logs its own way")
        settings["log_limit"] = parse_size(log_limit)
    if cpus is not None:
        if settings.get("cluster", "local") != "local":
            raise UsageError(f"--cpus is for the local cluster; the {settings['cluster']} "
                             f"cluster has the CPUs its engine manages")
        settings["cpus"] = cpus
    for key, value in (("kubeconfig", kubeconfig), ("context", context)):
        if value is not None:
            if settings.get("cluster") != "kubernetes":
                raise UsageError(f"--{key} is for the kubernetes cluster")
            settings[key] = os.path.abspath(value) if key == "kubeconfig" else value
    # asked for at each up, never remembered: isolation comes back with the next plain up
    settings.pop("isolation", None)
    if no_isolation:
        if settings.get("cluster", "local") != "local":
            raise UsageError(f"--no-isolation is for the local cluster; the "
                             f"{settings['cluster']} cluster isolates pods its own way")
        settings["isolation"] = False
    before = read_json(config) if config.exists() else None
    # whole or not at all: a full disk must not leave an empty config behind
    write_private(config, settings)
    log_path = where / "server.log"
    with open(os.open(log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600), "ab") as log:
        proc = subprocess.Popen([sys.executable, "-m", "podsweep.server", "--home", str(where)],
                                stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                start_new_session=True)
    deadline = time.monotonic() + START_TIMEOUT
    while (record := read_server(where)) is None or record["pid"] != proc.pid:
        if proc.poll() is not None or time.monotonic() > deadline:
            tail = log_path.read_text(errors="replace").splitlines()[-10:]
            if before is not None:        # the next up runs as the last one that worked
                write_private(config, before)
            if proc.returncode == DiskFull.exit_code:   # its log may not have room to say so
                raise disk_full(where)
            refusal = tail[-1].partition(REFUSAL)[2] if tail else ""
            if proc.returncode == UsageError.exit_code and refusal:
                raise UsageError(refusal)
            raise PodsweepError("the control plane did not start; its log says:\n  "
                                + "\n  ".join(tail))
        time.sleep(0.05)
    count = record.get("gpus", 0)
    engine = settings.get("cluster", "local")
    kind = "virtual " if engine == "local" and settings.get("gpus") is not None else ""
    shared = f" and {record['cpus']} CPU(s)" if record.get("cpus") is not None else ""
    typer.echo(f"podsweep is up at {record['url']} on the {engine} cluster with {count} "
               f"{kind}GPU(s){shared} (state and logs in {where})")
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


def holders(gpu: dict[str, Any]) -> str:
    """Who holds a GPU: its pod, or each pod's share where pods hold it in fractions."""
    if gpu.get("shares"):
        return ", ".join(f"{s['pod'] or 'in use'} ({format_gpus(s['fraction'])})"
                         for s in gpu["shares"])
    return str(gpu["pod"] or ("in use" if gpu.get("in_use") else "-"))


def status(output: Annotated[Output, OutputOption] = Output.table) -> None:
    """Where the control plane runs, as whom you are logged in, and its GPUs."""
    record = read_server(home())
    if record is None:
        typer.echo("podsweep is not running (start it with podsweep up)")
        raise typer.Exit(1)
    data = client().get("/status")
    data.update(url=record["url"], pid=record["pid"], home=str(home()))
    # a GPU in use by another project's pod comes without the pod's name
    rows = [[g["index"], g["name"], holders(g)] for g in data["gpus"]]
    text = (f"podsweep {data['version']} ({data['cluster']}) at {data['url']}, pid "
            f"{data['pid']}\nweb UI: {data['url']}/\nhome: {data['home']}\n"
            f"pods isolated by: {data.get('isolation', '-')}\n"
            f"logged in as {data['user']}"
            f"{' (admin)' if data['admin'] else ''}\n\n"
            + (table(["gpu", "name", "pod"], rows) if rows else "no GPUs"))
    emit(output, data, text)
