"""``podsweep list``, ``get``, ``logs``, ``delete``: following the work, in runai's layout."""

from __future__ import annotations

import sys
from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any, Optional

import typer

from ..errors import NotFound, UsageError
from ..model import MAX_PODS_SHOWN, format_gpus
from ..timefmt import age
from .common import OutputOption, ProjectOption, client, configured_project, emit
from .printers import Output, cell, table

if TYPE_CHECKING:
    from ..client import Client


def find_project(api: Client, name: str, project: Optional[str]) -> str:
    """The project of job ``name``: the one given, the default one, or the only match."""
    chosen = configured_project(project)
    if chosen:
        return chosen
    matches = [j["project"] for j in api.get("/jobs") if j["name"] == name]
    if not matches:
        raise NotFound(f"job {name!r} not found")
    if len(matches) > 1:
        raise UsageError(f"job {name!r} exists in projects {', '.join(matches)}: pass -p")
    return str(matches[0])


def list_(
    project: Annotated[Optional[str], ProjectOption] = None,
    all_projects: Annotated[bool, typer.Option("--all-projects", "-A",
                                               help="jobs of every project you see")] = False,
    output: Annotated[Output, OutputOption] = Output.table,
) -> None:
    """Jobs with their status, GPUs and pods."""
    chosen = None if all_projects else configured_project(project)
    jobs: list[dict[str, Any]] = client().get("/jobs", project=chosen)
    rows = [[j["name"], j["status"], age(j["created"]), j["project"], j["user"],
             f"{format_gpus(j['allocated'])} ({format_gpus(j['requested'])})",
             f"{j['running']} ({j['pending']})",
             f"{j['succeeded']}/{j['completions']}"] for j in jobs]
    text = table(["name", "status", "age", "project", "user", "gpus allocated (requested)",
                  "pods running (pending)", "completions"], rows) if rows else \
        "No jobs" + (f" in project {chosen}" if chosen else "")
    emit(output, jobs, text)


def pod_gpus(pod: dict[str, Any]) -> str:
    """A pod's GPUs: their ids, with its share where it holds a fraction of one ("0 (0.5)")."""
    ids = ",".join(map(str, pod["gpus"])) or "-"
    share = pod.get("fraction")
    return f"{ids} ({format_gpus(share)})" if share is not None else ids


def get(
    name: Annotated[str, typer.Argument(help="the job")],
    project: Annotated[Optional[str], ProjectOption] = None,
    output: Annotated[Output, OutputOption] = Output.table,
) -> None:
    """A job's fields, its pods, its events (preemptions among them) and its HPO results."""
    api = client()
    path = f"/jobs/{find_project(api, name, project)}/{name}"
    detail = api.get(path)
    job, pods, events = detail["job"], detail["pods"], detail["events"]
    fields = [("Name", job["name"]), ("Project", job["project"]), ("User", job["user"]),
              ("Status", job["status"]), ("Age", age(job["created"])),
              ("Command", " ".join(job["command"])), ("GPUs per pod", format_gpus(job["gpus"])),
              ("Parallelism", job["parallelism"]), ("Completions", job["completions"]),
              ("Succeeded", job["succeeded"]), ("Failed", job["failed"]),
              ("Running", job["running"]), ("Pending", job["pending"])]
    if job.get("message"):
        fields.append(("Message", job["message"]))
    width = max(len(k) for k, _ in fields) + 1
    text = "\n".join(f"{k + ':':<{width}} {v}" for k, v in fields)
    pod_rows = [[p["name"], p["status"], pod_gpus(p),
                 age(p["created"], p["finished"]), p["attempt"],
                 "-" if p["exit_code"] is None else p["exit_code"]] for p in pods]
    text += "\n\nPODS\n" + (table(["pod", "status", "gpus", "age", "attempt", "exit"], pod_rows)
                            if pod_rows else "none yet")
    if len(pods) >= MAX_PODS_SHOWN:
        text += f"\n(the running pods and the latest, {len(pods):,} in all; the counts above " \
                f"are the whole job's)"
    event_rows = [[datetime.fromtimestamp(e["time"]).strftime("%H:%M:%S"), e["kind"],
                   e["message"]] for e in events]
    text += "\n\nEVENTS\n" + table(["time", "event", "message"], event_rows)
    hpo: dict[str, Any] = {"experiments": [], "problems": []}
    if job["hpo_dirs"]:     # only a job with volumes has somewhere to keep HPO results
        hpo = api.get(path + "/experiments")
        text += "\n\nHPO EXPERIMENTS\n" + experiments_text(hpo)
    emit(output, {**detail, "hpo": hpo}, text)


def experiments_text(hpo: dict[str, Any]) -> str:
    """The job's experiments: where each journal is, its trials, and the best so far."""
    rows = []
    for e in hpo["experiments"]:
        if e["error"]:
            rows.append([e["path"], "-", e["error"]])
            continue
        statuses = ", ".join(f"{n} {s}" for s, n in sorted(e["statuses"].items()))
        trials = f"{e['trials']}" + (f"/{e['size']}" if e["size"] else "") + \
            (f" ({statuses})" if statuses else "")
        best = e["best"]
        rows.append([e["path"], trials, "-" if best is None else
                     f"#{best['trial']} {best['metric']}={cell(best['value'])} "
                     f"({best['mode']}) {best['config']}"])
    lines = [table(["journal", "trials", "best"], rows)] if rows else \
        ["none found in the job's volumes"]
    return "\n".join(lines + hpo["problems"])


def logs(
    name: Annotated[str, typer.Argument(help="the job")],
    pod: Annotated[Optional[str], typer.Option("--pod", help="the pod (default: the "
                                                              "job's first)")] = None,
    follow: Annotated[bool, typer.Option("--follow", "-f", help="stream as it grows")] = False,
    tail: Annotated[Optional[int], typer.Option(help="only the last N lines")] = None,
    project: Annotated[Optional[str], ProjectOption] = None,
) -> None:
    """A pod's output."""
    api = client()
    chosen = find_project(api, name, project)
    if pod is None:
        pods = api.get(f"/jobs/{chosen}/{name}")["pods"]
        if not pods:
            raise NotFound(f"job {name!r} has no pods yet")
        pod = str(pods[0]["name"])
    path = f"/jobs/{chosen}/{name}/logs"
    if tail is not None and tail < 0:
        raise UsageError(f"--tail must be at least 0, got {tail}")
    if follow:
        params = {"pod": pod, "follow": "true", **({"tail": tail} if tail is not None else {})}
        for chunk in api.stream(path, **params):
            sys.stdout.buffer.write(chunk)
            sys.stdout.flush()
        return
    sys.stdout.write(api.get(path, pod=pod, tail=tail))


def delete(
    name: Annotated[str, typer.Argument(help="the job")],
    project: Annotated[Optional[str], ProjectOption] = None,
) -> None:
    """Stop every pod of the job and remove it."""
    api = client()
    chosen = find_project(api, name, project)
    job = api.get(f"/jobs/{chosen}/{name}")
    running = [p for p in job["pods"] if p["status"] in ("Running", "Terminating")]
    if running:   # each pod may take its grace period: say so before the wait
        typer.echo(f"Stopping {len(running)} pod(s) of {name} (SIGTERM, then SIGKILL after "
                   f"{job['spec']['grace_period']:g} s)…", err=True)
    api.delete(f"/jobs/{chosen}/{name}")
    typer.echo(f"The job '{name}' has been deleted")
