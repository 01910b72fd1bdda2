"""The native supervisor (``supervisor.c``): compiled on first use, into a cache, by ``cc``.

Starting a pod under the C supervisor costs the control plane one posix_spawn of a small
static binary, where the Python supervisor costs a fork of the control plane (its page
tables) and an interpreter's worth of work per pod. The binary is built once per version
of its source: its name carries a hash of the source and the flags, so versions side by
side never mix, and a build lands by rename, so concurrent first uses never see half a
file. Where no compiler works, :func:`native_supervisor` says why and the caller falls back
to the Python supervisor, which keeps the same contract.

Built ahead of time by ``make install``, which runs :func:`main` (prints the binary's path).
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
from pathlib import Path

from .sandbox import RuntimeSetupError

log = logging.getLogger("podsweep.runtime")

SOURCE = Path(__file__).with_name("supervisor.c")
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


def build(directory: Path) -> Path:
    """The supervisor binary in ``directory``, compiled unless already there.

    Raises :class:`RuntimeSetupError` (with the compiler's own words) if it cannot be built.
    """
    source = SOURCE.read_bytes()
    key = hashlib.sha256(source + " ".join(CFLAGS).encode()).hexdigest()[:16]
    target = directory / f"podsweep-supervisor-{key}"
    if os.access(target, os.X_OK):
        return target
    cc = compiler()
    if cc is None:
        raise RuntimeSetupError("no C compiler (cc) to build the native pod supervisor")
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    errors = []
    for link in LINKS:
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=directory)
        os.close(fd)
        try:
            result = subprocess.run([cc, *CFLAGS, *link, "-o", tmp, str(SOURCE)],
                                    capture_output=True, text=True, timeout=_BUILD_TIMEOUT,
                                    stdin=subprocess.DEVNULL)
            if result.returncode == 0:
                os.chmod(tmp, 0o755)
                os.replace(tmp, target)
                return target
            errors.append(result.stderr.strip() or f"{cc} exited with {result.returncode}")
        except (OSError, subprocess.TimeoutExpired) as exc:
            errors.append(str(exc))
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
    raise RuntimeSetupError(f"cannot build the native pod supervisor with {cc}: "
                            f"{errors[-1][-2000:]}")


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


def main() -> int:
    try:
        print(build(cache_dir()))
    except (RuntimeSetupError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
