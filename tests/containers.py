"""A container image for the tests, built here from this machine's files: no registry needed.

No registry is reachable where the tests run, so the image the local cluster's ``-i`` tests
run is made from what the machine has: Debian's ``/usr/bin/python3`` with the libraries it
and its standard library's extension modules link against, the standard library (without
its own tests), a shell and the few programs the tests' scripts call, and podsweep's HPO
library. ``podman import`` turns the tree into an image in about two seconds.

The tag holds a hash of what went in, so one build serves every test session until the
files change (:func:`build_test_image`); :func:`image` is the tests' fixture.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

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


def build_test_image(cache: Path) -> str:
    """The tag of the test image, built and imported unless podman has it already."""
    engine = podman()
    assert engine is not None
    tag = f"{REPOSITORY}:{image_hash()}"
    if subprocess.run([engine, "image", "exists", tag]).returncode == 0:
        return tag
    root = cache / f"rootfs-{os.getpid()}"
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    try:
        build_rootfs(root)
        tar = subprocess.Popen(["tar", "-C", str(root), "-c", "."], stdout=subprocess.PIPE)
        subprocess.run([engine, "import", "--change", "CMD=/usr/bin/python3",
                        "--change", "ENV=PATH=/usr/local/bin:/usr/bin:/bin",
                        "--change", f"ENV=PYTHONPATH={SITE}", "-", tag],
                       stdin=tar.stdout, check=True, capture_output=True)
        assert tar.wait() == 0
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return tag


@pytest.fixture(scope="session")
def image(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The test image's tag; a skip where podman is missing, a failure if it must be there
    (``PODSWEEP_REQUIRE_PODMAN=1``, .ci/run)."""
    if podman() is None:
        if os.environ.get("PODSWEEP_REQUIRE_PODMAN") == "1":
            pytest.fail("PODSWEEP_REQUIRE_PODMAN=1 but podman is not installed")
        pytest.skip("podman is not installed (apt-get install podman): -i runs nowhere here")
    return build_test_image(tmp_path_factory.mktemp("image"))


if __name__ == "__main__":     # build it by hand: python tests/containers.py
    print(build_test_image(Path("/tmp/podsweep-image")))
