"""podsweep's C programs, compiled on first use, into a cache, by ``cc``.

- ``supervisor.c``, the native pod supervisor (:func:`native_supervisor`). Starting a pod
  under it costs the control plane one posix_spawn of a small static binary, where the
  Python supervisor costs a fork of the control plane (its page tables) and an
  interpreter's worth of work per pod. Where no compiler works, :func:`native_supervisor`
  says why and the caller falls back to the Python supervisor, which keeps the same
  contract.
- ``sandbox.c``, the sandbox that gives a pod its volumes (:func:`native_sandbox`, used by
  :mod:`podsweep.runtime.sandbox`). It has no Python stand-in: it must exec the command in
  place, after steps that Python's standard library cannot take in one process.

A binary is built once per version of its source: its name carries a hash of the source and
the flags, so versions side by side never mix, and a build lands by rename, so concurrent
first uses never see half a file.

Built ahead of time by ``make install``, which runs :func:`main` (prints the binaries'
paths).
"""

from __future__ import annotations

import functools
import hashlib
import logging
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from .errors import RuntimeSetupError

log = logging.getLogger("podsweep.runtime")


@dataclass(frozen=True)
class Program:
    """One of podsweep's C programs: a single source file, built by :func:`build`."""

    name: str           # the binary's name, before the key of its source
    source: Path
    title: str          # how an error names it
    no_compiler: str    # the error where there is no compiler at all


SUPERVISOR = Program("podsweep-supervisor", Path(__file__).with_name("supervisor.c"),
                     "the native pod supervisor",
                     "no C compiler (cc) to build the native pod supervisor")
SANDBOX = Program("podsweep-sandbox", Path(__file__).with_name("sandbox.c"),
                  "podsweep's sandbox",
                  "volumes (-v) need a C compiler to build podsweep's sandbox: "
                  "apt-get install gcc")
CFLAGS = ("-std=gnu11", "-O2", "-Wall", "-Wextra", "-Werror")
# Static where the C library has an archive (no loader to run at each start, and nothing
# in the pod's LD_* variables reaches the supervisor); dynamic otherwise.
LINKS = (("-static",), ())
_BUILD_TIMEOUT = 120.0


def cache_dir() -> Path:
    """``$PODSWEEP_CACHE``, else the user's cache directory (``~/.cache/podsweep``)."""
    env = os.environ.get("PODSWEEP_CACHE")
    if env:
        return Path(env).expanduser()
    import platformdirs

    return Path(platformdirs.user_cache_dir("podsweep"))


def compiler() -> str | None:
    """``$CC``, else ``cc`` or ``gcc`` from PATH; None if there is none."""
    return os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")


@functools.cache
def _key(source: Path) -> str:
    """The hash that names a build of ``source``: read once per process, not per pod."""
    return hashlib.sha256(source.read_bytes() + " ".join(CFLAGS).encode()).hexdigest()[:16]


def build(directory: Path, program: Program = SUPERVISOR) -> Path:
    """``program``'s binary in ``directory``, compiled unless already there.

    Raises :class:`RuntimeSetupError` (with the compiler's own words) if it cannot be built.
    """
    target = directory / f"{program.name}-{_key(program.source)}"
    if os.access(target, os.X_OK):
        return target
    cc = compiler()
    if cc is None:
        raise RuntimeSetupError(program.no_compiler)
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    errors = []
    for link in LINKS:
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=directory)
        os.close(fd)
        try:
            result = subprocess.run([cc, *CFLAGS, *link, "-o", tmp, str(program.source)],
                                    capture_output=True, text=True, timeout=_BUILD_TIMEOUT,
                                    stdin=subprocess.DEVNULL)
            if result.returncode == 0:
                os.chmod(tmp, 0o755)
                os.replace(tmp, target)
                return target
            errors.append(_first_error(result.stderr)
                          or f"{cc} exited with {result.returncode}")
        except (OSError, subprocess.TimeoutExpired) as exc:
            errors.append(str(exc))
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
    raise RuntimeSetupError(f"cannot build {program.title} with {cc}: {errors[-1]}")


def _first_error(output: str) -> str:
    """The compiler's first error line (a missing header, say): one line to show a user."""
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    return next((line for line in lines if "error" in line), lines[-1] if lines else "")


@functools.cache
def native_supervisor() -> Path | None:
    """The native supervisor, built into :func:`cache_dir` if need be; None if it cannot be.

    ``PODSWEEP_SUPERVISOR=python`` in the environment turns it off (the Python supervisor
    is then used). The answer holds for the life of the process.
    """
    if os.environ.get("PODSWEEP_SUPERVISOR", "").lower() == "python":
        return None
    try:
        return build(cache_dir())
    except (RuntimeSetupError, OSError) as exc:
        log.warning("using the Python pod supervisor: %s", exc)
        return None


def native_sandbox() -> Path:
    """The sandbox, built into :func:`cache_dir` if need be (a stat once it is there).

    Not remembered across calls, unlike the supervisor: a binary cleaned out of the cache
    is built again rather than failing every later pod with volumes.

    Raises :class:`RuntimeSetupError` if it cannot be built (no compiler: one line that
    says what to install).
    """
    try:
        return build(cache_dir(), SANDBOX)
    except OSError as exc:
        raise RuntimeSetupError(f"cannot build {SANDBOX.title}: {exc}") from exc


def main() -> int:
    failed = 0
    for program in (SUPERVISOR, SANDBOX):
        try:
            print(build(cache_dir(), program))
        except (RuntimeSetupError, OSError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            failed = 1
    return failed


if __name__ == "__main__":
    sys.exit(main())
