"""A container image for the tests, built here from this machine's files: no registry needed.

No registry is reachable where the tests run, so the image the local cluster's ``-i`` tests
run is made from what the machine has: Debian's ``/usr/bin/python3`` with the libraries it
and its standard library's extension modules link against, the standard library (without
its own tests), a shell and the few programs the tests' scripts call, and podsweep's HPO
library. ``podman import`` turns the tree into an image in about two seconds.

The tag holds a hash of what went in, so one build serves every test session until the
files change (:func:`build_test_image`); :func:`image` is the tests' fixture.

Rootless podman keeps a store of images per user: the rootless tests import the same image
into the store of a normal user (:class:`User`, :func:`rootless_user`), who runs podman
through :meth:`User.argv` with :meth:`User.env`.
"""

from __future__ import annotations

import hashlib
import os
import pwd
import shutil
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

import pytest

REPO = Path(__file__).resolve().parents[1]
HPO = REPO / "src" / "podsweep"
# what the tests' shell scripts call, besides the shell's builtins
PROGRAMS = ("sh", "sleep", "cat", "date", "pwd", "env", "true", "ls")
# Debian's Python where there is one, else the one running the tests (a venv's base)
PYTHON = Path("/usr/bin/python3") if Path("/usr/bin/python3").exists() else \
    Path(getattr(sys, "_base_executable", sys.executable))
# podsweep.hpo's place in the image, on PYTHONPATH: whatever the interpreter's own
# site-packages directory is called (Debian's dist-packages, others' site-packages)
SITE = "/opt/podsweep"
REPOSITORY = "localhost/podsweep-test-python"
#: the normal user the rootless tests run a control plane as when they run as root
TEST_USER = "podsweep-test"
# a login's PATH: root's own may lead through directories closed to the user (pyenv's)
USER_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def podman() -> str | None:
    """The podman on PATH, or None."""
    return shutil.which("podman")


def _libraries(binaries: list[Path]) -> set[Path]:
    """The shared libraries ``binaries`` load, as ldd resolves them on this machine."""
    out: set[Path] = set()
    for chunk in range(0, len(binaries), 200):
        listed = subprocess.run(["ldd", *map(str, binaries[chunk:chunk + 200])],
                                capture_output=True, text=True).stdout
        for line in listed.splitlines():
            # "\tlibc.so.6 => /lib/.../libc.so.6 (0x...)", "\t/lib64/ld-linux... (0x...)";
            # with several files, each is named first on a line of its own
            parts = line.split()
            if not line.startswith("\t") or not parts:
                continue
            path = parts[2] if "=>" in parts and len(parts) > 2 else parts[0]
            if path.startswith("/"):
                out.add(Path(path))
    return out


def _sources() -> tuple[Path, Path, list[Path]]:
    """The interpreter, its standard library's directory and the programs, as found here."""
    python = PYTHON.resolve()
    stdlib = Path(subprocess.run([str(python), "-c", "import sysconfig; print("
                                  "sysconfig.get_paths()['stdlib'])"],
                                 capture_output=True, text=True, check=True).stdout.strip())
    programs = [Path(p).resolve() for p in map(shutil.which, PROGRAMS) if p]
    return python, stdlib, programs


def image_hash() -> str:
    """A hash of everything the image is made of (names, sizes and times, not contents:
    a hash of 60 MB would cost the time the cache saves)."""
    python, stdlib, programs = _sources()
    digest = hashlib.sha256()
    for path in [python, stdlib, *programs, *sorted(HPO.glob("hpo/*.py")),
                 HPO / "__init__.py", Path(__file__)]:
        st = path.stat()
        digest.update(f"{path} {st.st_size} {st.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:12]


def build_rootfs(root: Path) -> None:
    """The image's files under ``root`` (an empty directory)."""
    python, stdlib, programs = _sources()
    version = stdlib.name       # python3.11

    def copy(src: Path, dst: Path | None = None) -> None:
        target = root / (dst or src).relative_to("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, target)

    shutil.copytree(stdlib, root / "usr/lib" / version, symlinks=True,
                    ignore=shutil.ignore_patterns("test", "idlelib", "tkinter", "turtledemo",
                                                  "ensurepip", "site-packages",
                                                  "dist-packages", "config-*"))
    copy(python, Path("/usr/bin/python3"))
    for program in programs:
        copy(program, Path("/bin") / program.name)
    if not (root / "bin/sh").exists():
        os.symlink(programs[0].name, root / "bin/sh")
    extensions = sorted((root / "usr/lib" / version / "lib-dynload").glob("*.so"))
    libraries = _libraries([python, *programs, *extensions])
    # glibc loads libgcc_s at run time, not at link time, to unwind a thread that ends
    # (pthread_exit): without it, a process whose thread ends at exit aborts (exit 134)
    libgcc = [lib.parent / "libgcc_s.so.1" for lib in libraries if lib.name == "libc.so.6"]
    for lib in libraries | {p for p in libgcc if p.exists()}:
        copy(lib)
        real = lib.resolve()
        if real != lib:
            copy(real)
    site = root / SITE.lstrip("/") / "podsweep"
    site.mkdir(parents=True)
    shutil.copy2(HPO / "__init__.py", site / "__init__.py")
    shutil.copytree(HPO / "hpo", site / "hpo", ignore=shutil.ignore_patterns("__pycache__"))
    for top in ("tmp", "proc", "sys", "dev", "etc", "root"):
        (root / top).mkdir(exist_ok=True)
    (root / "tmp").chmod(0o1777)
    (root / "etc/passwd").write_text("root:x:0:0:root:/root:/bin/sh\n")
    (root / "etc/group").write_text("root:x:0:\n")


@dataclass(frozen=True)
class User:
    """Who runs podman (and a control plane) in a test: this process's own user, or, for a
    test run as root, a normal user (:data:`TEST_USER`) whose podman is rootless."""

    name: str
    uid: int
    gid: int
    home: Path

    @property
    def other(self) -> bool:
        """Whether commands run as this user need a switch from this process's."""
        return self.uid != os.geteuid()

    @property
    def runtime_dir(self) -> Path:
        """What a login gives the user as XDG_RUNTIME_DIR (podman keeps its run state there)."""
        return Path(f"/run/user/{self.uid}")

    def argv(self, *argv: str) -> list[str]:
        """``argv`` run as the user."""
        if not self.other:
            return list(argv)
        # through env: setpriv execs with root's effective capabilities still on (measured:
        # a program under /root, mode 0700, starts), and only the next exec is the user's own
        return ["setpriv", f"--reuid={self.uid}", f"--regid={self.gid}", "--init-groups",
                "env", "--", *argv]

    def env(self, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        """The environment of a login of the user's, and ``extra``."""
        extra = extra or {}
        if not self.other:
            return {**os.environ, **extra}
        return {"HOME": str(self.home), "USER": self.name, "LOGNAME": self.name,
                "PATH": USER_PATH, "XDG_RUNTIME_DIR": str(self.runtime_dir), **extra}

    def first_subuid(self) -> int:
        """The host uid that uid 1 in the user's containers is (the start of its range in
        /etc/subuid; rootless podman maps the container's root to the user itself)."""
        for line in Path("/etc/subuid").read_text().splitlines():
            name, start, _ = line.split(":")
            if name in (self.name, str(self.uid)):
                return int(start)
        raise AssertionError(f"no range for {self.name} in /etc/subuid")

    def podman(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """The user's podman, its output as text."""
        engine = podman()
        assert engine is not None
        return subprocess.run(self.argv(engine, *args), env=self.env(), capture_output=True,
                              text=True, check=check)


def unavailable(why: str) -> NoReturn:
    """Skip a podman test, saying why; fail it where podman must be there
    (``PODSWEEP_REQUIRE_PODMAN=1``, .ci/run)."""
    if os.environ.get("PODSWEEP_REQUIRE_PODMAN") == "1":
        pytest.fail(f"PODSWEEP_REQUIRE_PODMAN=1 but {why}")
    pytest.skip(why)


def rootless_user() -> User:
    """A normal user able to run podman rootless and podsweep's CLI: this process's user
    where it is not root; else :data:`TEST_USER` (``PODSWEEP_TEST_USER``), whose login's
    runtime directory is made here if need be. Skips (or fails) saying what is missing."""
    if podman() is None:
        unavailable("podman is not installed (apt-get install podman)")
    if os.geteuid() != 0:
        me = pwd.getpwuid(os.geteuid())
        return User(me.pw_name, me.pw_uid, me.pw_gid, Path(me.pw_dir))
    setup = "scripts/test-user.sh sets one up, as .ci/run does"
    name = os.environ.get("PODSWEEP_TEST_USER", TEST_USER)
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        entry = None
    if entry is None:
        unavailable(f"there is no user {name} to run a rootless control plane as: {setup}")
    for file in (Path("/etc/subuid"), Path("/etc/subgid")):
        ranges = file.read_text().splitlines() if file.exists() else []
        if not any(line.startswith(f"{name}:") for line in ranges):
            unavailable(f"user {name} has no range in {file} (rootless podman maps a "
                        f"container's users into it): {setup}")
    if shutil.which("newuidmap") is None:
        unavailable("rootless podman needs newuidmap: apt-get install uidmap")
    user = User(name, entry.pw_uid, entry.pw_gid, Path(entry.pw_dir))
    if not user.runtime_dir.is_dir():
        # as logind makes it at a login: the user's alone
        user.runtime_dir.parent.mkdir(mode=0o755, exist_ok=True)
        user.runtime_dir.mkdir(mode=0o700)
        os.chown(user.runtime_dir, user.uid, user.gid)
    return user


def build_test_image(cache: Path, user: User | None = None) -> str:
    """The tag of the test image, built and imported unless podman has it already (the
    podman of ``user`` if given: the image is then in that user's own store)."""
    engine = podman()
    assert engine is not None
    env = None if user is None else user.env()

    def as_user(*argv: str) -> list[str]:
        return list(argv) if user is None else user.argv(*argv)

    tag = f"{REPOSITORY}:{image_hash()}"
    if subprocess.run(as_user(engine, "image", "exists", tag), env=env).returncode == 0:
        return tag
    root = cache / f"rootfs-{os.getpid()}"
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    try:
        build_rootfs(root)
        tar = subprocess.Popen(["tar", "-C", str(root), "-c", "."], stdout=subprocess.PIPE)
        # the user's podman reads the tree from the pipe: it needs no access to the files
        subprocess.run(as_user(engine, "import", "--change", "CMD=/usr/bin/python3",
                               "--change", "ENV=PATH=/usr/local/bin:/usr/bin:/bin",
                               "--change", f"ENV=PYTHONPATH={SITE}", "-", tag),
                       stdin=tar.stdout, check=True, capture_output=True, env=env)
        assert tar.wait() == 0
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return tag


@pytest.fixture(scope="session")
def image(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The test image's tag; a skip where podman is missing, a failure if it must be there
    (``PODSWEEP_REQUIRE_PODMAN=1``, .ci/run)."""
    if podman() is None:
        unavailable("podman is not installed (apt-get install podman): -i runs nowhere here")
    return build_test_image(tmp_path_factory.mktemp("image"))


if __name__ == "__main__":     # build it by hand: python tests/containers.py
    print(build_test_image(Path("/tmp/podsweep-image")))
