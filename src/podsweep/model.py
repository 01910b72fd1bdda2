"""The objects podsweep schedules, and the rules for their names and quantities.

A **project** has a deserved GPU quota. A **job** is one command run as ``completions`` pods,
at most ``parallelism`` at a time, each with ``gpus`` GPUs of its own. A **pod** is one
attempt at one completion index: ``<job>-<index>-<attempt>`` (``hpo1-4-0``, then
``hpo1-4-1`` after a preemption).
"""

from __future__ import annotations

import enum
import math
import os
import re
from collections.abc import Mapping
from dataclasses import MISSING, InitVar, dataclass, field, fields
from fractions import Fraction
from types import MappingProxyType
from typing import Any

from .errors import UsageError

NAME_RE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
NAME_MAX = 63
ENV_KEY_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# An image reference ([registry[:port]/]name[:tag][@sha256:digest]) in the characters its
# grammar allows: never one that starts with "-", which a container engine's command line
# would take for an option
IMAGE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/:@+-]{0,511}$")
MAX_GRACE_PERIOD = 3600.0
# Upper bounds on a job's counts, refused at submit: far above any real sweep, low enough
# that nothing sized by them (a job's indexes, the pods offered in one reconcile) can stall
# the control plane.
MAX_COMPLETIONS = 100_000
MAX_PARALLELISM = 100_000
MAX_GPUS = 1024            # per pod, and a project's quota on the local cluster
MAX_CPU = 4096             # per pod
MAX_BACKOFF_LIMIT = 1_000_000
MAX_QUOTA = 1_000_000      # a project's deserved GPUs (or CPUs): more than any cluster has
# A pod's command and environment reach execve, which refuses one string of 128 KiB or more
# (MAX_ARG_STRLEN) and, with the pod's own variables, all of them past ARG_MAX (2 MiB on a
# default stack): bounded well below both, so a job too big to start is refused at submit.
MAX_ARG_BYTES = 128 * 1024         # one string with its NUL, as the kernel counts it
MAX_COMMAND_BYTES = 256 * 1024
MAX_GPU_DENOMINATOR = 100
"""A fractional GPU is a share in hundredths or coarser (0.25, 0.33, 1/3): a finer one
means nothing on a real GPU, and the bound lets a fraction sent as a JSON number (a float)
be read back exactly (:func:`parse_gpus`)."""
MAX_PODS_SHOWN = 1000
"""The most pods (running ones first, then the latest) and events a job's detail holds:
a job of 100,000 pods is sent and shown in part (its fields count them all)."""
CLUSTER_NAMES = ("local", "slurm", "kubernetes")
"""``podsweep up --cluster NAME``: the engines :data:`podsweep.cluster.ENGINES` loads, named
here so that the CLI checks and lists them without importing the cluster package."""


class JobStatus(str, enum.Enum):
    PENDING = "Pending"       # no pod running yet
    RUNNING = "Running"
    SUCCEEDED = "Succeeded"   # completions pods succeeded
    FAILED = "Failed"         # a pod failed more than backoff_limit times
    DELETED = "Deleted"

    @property
    def done(self) -> bool:
        return self in (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.DELETED)


class PodStatus(str, enum.Enum):
    RUNNING = "Running"
    TERMINATING = "Terminating"   # SIGTERM sent (preemption or delete), grace running
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"
    PREEMPTED = "Preempted"       # ended by a preemption; its index runs again
    DELETED = "Deleted"

    @property
    def active(self) -> bool:
        """Holds its GPUs: the process may still be running."""
        return self in (PodStatus.RUNNING, PodStatus.TERMINATING)


def check_name(kind: str, name: str) -> str:
    """A DNS-1123 label, as Kubernetes requires for the same names."""
    if not isinstance(name, str) or len(name) > NAME_MAX or not NAME_RE.match(name):
        raise UsageError(f"invalid {kind} name {name!r}: use at most {NAME_MAX} lower-case "
                         f"letters, digits and '-', starting and ending with a letter or digit")
    return name


def check_count(what: str, value: Any, minimum: int, maximum: int | None = None) -> int:
    """``value`` as a whole number from ``minimum`` to ``maximum``, or a one-line UsageError."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise UsageError(f"{what} must be a whole number, got {value!r}")
    if value < minimum:
        raise UsageError(f"{what} must be at least {minimum}, got {value}")
    if maximum is not None and value > maximum:
        # the value may be huge (10**30, or past what str() converts): its size will do
        shown = str(value) if value < 10**12 else f"about 10^{int(value.bit_length() * 0.30103)}"
        raise UsageError(f"{what} must be at most {maximum:,}, got {shown}")
    return value


GPUS_FORMS = "a whole number of GPUs (0, 1, 2, ...) or a fraction of one in (0, 1) (0.5, 0.25)"

FINEST = ("-g {}: a fraction of a GPU has a denominator of at most "
          f"{MAX_GPU_DENOMINATOR} (0.25, 0.33 or 1/3, not 0.333)")


def parse_gpus(value: Any) -> int | Fraction:
    """``-g``: a whole number of GPUs (an int), or a share of one GPU (a Fraction in (0, 1),
    at most :data:`MAX_GPU_DENOMINATOR` in its denominator), from the CLI's text ("2",
    "0.5", "1/3"), the API's JSON number (2, 0.5) or a value already parsed.

    A float is read as the fraction it is nearest to (0.5 is 1/2, 0.3333333333333333 is
    1/3): JSON carries fractions as floats, and every share of the allowed denominators is
    far enough from the others that its float names it alone. A float that is not such a
    share (0.333) is refused, as is what is neither form (1.5, -1, "two"), in one line.
    """
    shown = value
    if isinstance(value, bool):
        raise UsageError(f"-g {value!r}: expected {GPUS_FORMS}")
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        text = value.strip()
        if re.fullmatch(r"-?[0-9]+", text):
            return int(text)     # a whole number, checked as one (--gpu must be at least 0)
        try:
            value = Fraction(text)
        except (ValueError, ZeroDivisionError):
            raise UsageError(f"-g {shown}: expected {GPUS_FORMS}") from None
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise UsageError(f"-g {shown}: expected {GPUS_FORMS}")
        near = Fraction(value).limit_denominator(MAX_GPU_DENOMINATOR)
        if float(near) != value:
            raise UsageError(FINEST.format(shown))
        value = near
    if not isinstance(value, Fraction):
        raise UsageError(f"-g {shown!r}: expected {GPUS_FORMS}")
    if value.denominator == 1 and value >= 0:
        return int(value)
    if not 0 < value < 1:
        more = "; more than one GPU is a whole number of them" if value > 1 else ""
        raise UsageError(f"-g {shown}: expected {GPUS_FORMS}{more}")
    if value.denominator > MAX_GPU_DENOMINATOR:
        raise UsageError(FINEST.format(shown))
    return value


def gpus_number(gpus: int | Fraction) -> int | float:
    """GPUs as JSON carries them: an int when whole (as ever), else a float
    (:func:`parse_gpus` reads it back exactly)."""
    if isinstance(gpus, int) or gpus.denominator == 1:
        return int(gpus)
    return float(gpus)


def format_gpus(gpus: int | float | Fraction) -> str:
    """GPUs as people read them: "2", "0.5", "1.25"; a share with no short decimal to 2
    places ("0.33" for 1/3)."""
    if isinstance(gpus, float):
        gpus = Fraction(gpus).limit_denominator(MAX_GPU_DENOMINATOR * MAX_GPU_DENOMINATOR)
    if isinstance(gpus, int) or gpus.denominator == 1:
        return str(int(gpus))
    exact = gpus * 10**6
    if exact.denominator == 1:   # 1/2, 1/4, 1/8...: a short decimal says it exactly
        return f"{float(gpus):.6f}".rstrip("0")
    return f"{float(gpus):.2f}"


@dataclass(frozen=True)
class Volume:
    """``-v SRC:DST[:ro]``: the host directory SRC, seen by the pod at DST.

    Kubernetes also mounts an NFS export (``-v nfs://SERVER/EXPORT:DST[:ro]``, ``kind``
    ``nfs``, ``server`` set, ``src`` the export) and a PersistentVolumeClaim by name
    (``-v pvc:CLAIM:DST[:ro]``, ``kind`` ``pvc``, ``src`` the claim). Other clusters mount
    host directories only (:meth:`require_host`).
    """

    src: str
    dst: str
    read_only: bool = False
    kind: str = "host"          # host, nfs or pvc
    server: str | None = None   # nfs only

    @classmethod
    def parse(cls, text: str) -> Volume:
        kind, server, rest = "host", None, text
        if text.startswith("nfs://"):
            kind = "nfs"
            server, slash, path = text[len("nfs://"):].partition("/")
            if not server or not slash or not re.match(r"^[A-Za-z0-9.-]+$", server):
                raise UsageError(f"invalid volume {text!r}: expected "
                                 f"nfs://SERVER/EXPORT:DST or nfs://SERVER/EXPORT:DST:ro")
            rest = "/" + path
        elif text.startswith("pvc:"):
            kind, rest = "pvc", text[len("pvc:"):]
        parts = rest.split(":")
        if len(parts) not in (2, 3) or (len(parts) == 3 and parts[2] not in ("ro", "rw")):
            forms = {"host": "SRC:DST or SRC:DST:ro", "pvc": "pvc:CLAIM:DST or pvc:CLAIM:DST:ro",
                     "nfs": "nfs://SERVER/EXPORT:DST or nfs://SERVER/EXPORT:DST:ro"}
            raise UsageError(f"invalid volume {text!r}: expected {forms[kind]}")
        src, dst = parts[0], parts[1]
        if kind == "pvc":
            if len(src) > 253 or not re.match(r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$", src):
                raise UsageError(f"invalid volume {text!r}: {src!r} is not a claim name")
        elif not src.startswith("/"):
            raise UsageError(f"invalid volume {text!r}: the source must be an absolute path")
        if not dst.startswith("/"):
            raise UsageError(f"invalid volume {text!r}: the target must be an absolute path")
        norm = os.path.normpath(dst)
        if norm == "/" or ".." in dst.split("/"):
            raise UsageError(f"invalid volume {text!r}: cannot mount over {dst!r}")
        if kind != "pvc":
            src = os.path.normpath(src)
        return cls(src, norm, len(parts) == 3 and parts[2] == "ro", kind, server)

    def require_host(self, cluster: str) -> None:
        """Refuse an NFS or PVC volume on a cluster that mounts host directories only."""
        if self.kind != "host":
            raise UsageError(f"-v {self}: the {cluster} cluster mounts host directories only "
                             f"(SRC:DST); {self.kind} volumes are for Kubernetes")

    def __str__(self) -> str:
        src = {"host": self.src, "pvc": f"pvc:{self.src}",
               "nfs": f"nfs://{self.server}{self.src}"}[self.kind]
        return f"{src}:{self.dst}" + (":ro" if self.read_only else "")


def parse_env(items: list[str]) -> dict[str, str]:
    env: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not ENV_KEY_RE.match(key):
            raise UsageError(f"invalid environment variable {item!r}: expected KEY=VALUE")
        env[key] = value
    return env


def check_grace_period(value: Any) -> float:
    # bounded: a pod that ignores SIGTERM for ever could never be preempted; NaN compares
    # false both ways, so it is refused here too
    if isinstance(value, bool) or not isinstance(value, (int, float)) or \
            not 0 <= value <= MAX_GRACE_PERIOD:
        raise UsageError(f"--grace-period must be a number of seconds from 0 to "
                         f"{MAX_GRACE_PERIOD:.0f}, got {value!r}")
    return float(value)


def check_command_size(command: list[str], env: dict[str, str]) -> None:
    """Refuse a command or environment that execve would refuse (E2BIG), by its bytes."""
    total = 0
    for what, text in [*((f"argument {i}", a) for i, a in enumerate(command)),
                       *((f"environment variable {k}", f"{k}={v}") for k, v in env.items())]:
        size = len(text.encode(errors="surrogateescape")) + 1      # with its NUL
        if size > MAX_ARG_BYTES:
            raise UsageError(f"the command's {what} has {size - 1:,} bytes; each argument "
                             f"and variable must be under {MAX_ARG_BYTES:,} bytes (128 KiB; "
                             f"pass big data in a file)")
        total += size
    if total > MAX_COMMAND_BYTES:
        raise UsageError(f"the command and its environment have {total:,} bytes; they must "
                         f"stay within {MAX_COMMAND_BYTES:,} bytes (pass big data in a file)")


@dataclass(frozen=True)
class JobSpec:
    """What ``podsweep submit`` asks for; validated on construction."""

    name: str
    project: str
    command: list[str]
    # whole GPUs, each the pod's alone; or a Fraction in (0, 1), that share of one GPU,
    # which only the local cluster runs (parse_gpus reads both from text and JSON)
    gpus: int | Fraction = 0
    parallelism: int = 1
    completions: int = 1
    cpu: int = 1
    volumes: list[Volume] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    working_dir: str | None = None
    image: str | None = None
    backoff_limit: int = 6
    grace_period: float = 30.0
    # a spec read back from the store passed the limits of the day it was submitted; a limit
    # added since must not make it (and the listing of jobs) unreadable
    stored: InitVar[bool] = False

    def __post_init__(self, stored: bool) -> None:
        check_name("job", self.name)
        check_name("project", self.project)
        if not self.command or not all(isinstance(a, str) for a in self.command):
            raise UsageError("missing command: put it after --, e.g. "
                             "podsweep submit hpo1 -- python train.py")
        if any("\0" in a for a in self.command):
            raise UsageError("the command has a NUL character in an argument")
        # the env reaches a shell script (Slurm) and execve (local): a key is a plain name,
        # never a place for shell syntax, and no key or value holds NUL
        for key, value in self.env.items():
            if not isinstance(key, str) or not ENV_KEY_RE.match(key):
                raise UsageError(f"invalid environment variable name {key!r}: use letters, "
                                 f"digits and '_', not starting with a digit")
            if not isinstance(value, str) or "\0" in value:
                raise UsageError(f"environment variable {key}: the value must be text "
                                 f"without NUL characters")
        if not stored:
            check_command_size(self.command, self.env)
            if self.image is not None and (not isinstance(self.image, str)
                                           or not IMAGE_RE.fullmatch(self.image)):
                raise UsageError(f"-i {self.image!r}: not an image reference (such as "
                                 f"python:3.11-slim or registry.example.com/team/train:1)")
        # the bounds are for new jobs: one stored before them still loads
        def most(bound: int) -> int | None:
            return None if stored else bound

        if isinstance(self.gpus, Fraction):
            if self.gpus != parse_gpus(self.gpus) or self.gpus.denominator == 1:
                raise UsageError(f"-g {self.gpus}: expected {GPUS_FORMS}")
        else:
            check_count("--gpu", self.gpus, 0, most(MAX_GPUS))
        check_count("--parallelism", self.parallelism, 1, most(MAX_PARALLELISM))
        check_count("--completions", self.completions, 1, most(MAX_COMPLETIONS))
        check_count("--cpu", self.cpu, 1, most(MAX_CPU))
        check_count("--backoff-limit", self.backoff_limit, 0, most(MAX_BACKOFF_LIMIT))
        check_grace_period(self.grace_period)
        if self.working_dir is not None and not self.working_dir.startswith("/"):
            raise UsageError(f"--working-dir must be an absolute path, got {self.working_dir!r}")
        targets = [v.dst for v in self.volumes]
        if len(set(targets)) != len(targets):
            raise UsageError("two volumes have the same target")

    def whole_gpus(self, cluster: str) -> int:
        """Its GPUs per pod on a cluster that gives pods whole GPUs only (Kubernetes), or a
        one-line UsageError for a share of one."""
        if isinstance(self.gpus, Fraction):
            raise UsageError(f"-g {format_gpus(self.gpus)}: fractional GPUs run on the local "
                             f"cluster and on Slurm's GPU shards; the {cluster} cluster "
                             f"gives a pod whole GPUs (-g 1)")
        return self.gpus

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "project": self.project, "command": list(self.command),
                "gpus": gpus_number(self.gpus), "parallelism": self.parallelism,
                "completions": self.completions, "cpu": self.cpu,
                "volumes": [str(v) for v in self.volumes], "env": dict(self.env),
                "working_dir": self.working_dir, "image": self.image,
                "backoff_limit": self.backoff_limit, "grace_period": self.grace_period}

    @classmethod
    def from_request(cls, body: Mapping[str, Any]) -> JobSpec:
        """A new job from a request in the API's form: the API's JSON, the web UI's form
        once its text is read, the CLI's options. Volumes are their ``-v`` text; a field
        left out takes its default here (:data:`JOB_DEFAULTS`), the one place defaults are
        written; a field JobSpec does not have is refused."""
        names = {f.name for f in fields(cls)}
        unknown = sorted(k for k in body if k not in names)
        if unknown:
            raise UsageError(f"unknown job field(s): {', '.join(map(repr, unknown))}")
        return cls(**{**body, "volumes": [Volume.parse(v) for v in body.get("volumes", [])],
                      **({"gpus": parse_gpus(body["gpus"])} if "gpus" in body else {})})

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> JobSpec:
        names = {f.name for f in fields(cls)}
        known = {k: v for k, v in data.items() if k in names}
        known["volumes"] = [Volume.parse(v) for v in data.get("volumes", [])]
        known["command"] = list(data.get("command", []))
        if isinstance(known.get("gpus"), float):
            known["gpus"] = parse_gpus(known["gpus"])
        return cls(**known, stored=True)


# What a job gets for each field a request leaves out, read from JobSpec's own defaults so
# that the API's schema, the CLI's options and the web UI's form say the same: the fields
# with a plain default (volumes and env default to empty).
JOB_DEFAULTS: Mapping[str, Any] = MappingProxyType(
    {f.name: f.default for f in fields(JobSpec) if f.default is not MISSING})


def pod_name(job: str, index: int, attempt: int) -> str:
    return f"{job}-{index}-{attempt}"
