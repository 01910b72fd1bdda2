"""wrap_command and podsweep's sandbox, checked by running real sandboxes and looking at the
host after.

Most tests run twice: as root (a mount namespace alone) and as an unprivileged user (a user
namespace first), the two paths through ``sandbox.c``. CI runs as root, so the user's runs
drop to :data:`USER` with setpriv, on a copy of the sandbox in a directory that user can
reach (the real one is in root's 0700 cache).
"""

from __future__ import annotations

import os
import selectors
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from podsweep.model import Volume
from podsweep.runtime import PodLaunch, PodProcess, RuntimeSetupError, wrap_command
from podsweep.runtime.native import SANDBOX, cache_dir, compiler, native_sandbox
from podsweep.runtime.supervisor import proc_stat

# CI sets PODSWEEP_REQUIRE_NATIVE=1 (and installs a compiler): there these tests never skip.
needs_cc = pytest.mark.skipif(
    compiler() is None and os.environ.get("PODSWEEP_REQUIRE_NATIVE") != "1",
    reason="no C compiler here to build the sandbox")
ROOT = os.geteuid() == 0
needs_root = pytest.mark.skipif(not ROOT, reason="needs root (to drop privileges)")

USER = 4242            # no account: nothing of it exists on the host
AS_USER = ["setpriv", f"--reuid={USER}", f"--regid={USER}", "--clear-groups"]
SANDBOX_SETUP_FAILED = 125


@pytest.fixture
def public() -> Iterator[Path]:
    """A directory that root and :data:`USER` may both use."""
    path = Path(tempfile.mkdtemp(prefix="podsweep-sandbox-test-"))
    path.chmod(0o777)
    yield path
    shutil.rmtree(path)


@pytest.fixture
def src(public: Path) -> Path:
    path = public / "src"
    path.mkdir()
    path.chmod(0o777)
    (path / "f").write_text("from the host\n")
    return path


@dataclass
class Sandbox:
    """Runs wrap_command's argv as root or as :data:`USER`."""

    as_user: bool
    binary: Path        # the sandbox, where this user can run it
    cwd: Path

    def run(self, argv: list[str]) -> subprocess.CompletedProcess[str]:
        assert argv[0] == str(native_sandbox())
        argv = [str(self.binary), *argv[1:]]
        if self.as_user and ROOT:
            argv = [*AS_USER, *argv]
        return subprocess.run(argv, capture_output=True, text=True, timeout=30, cwd=self.cwd)


@pytest.fixture(params=["root", "user"])
def sandbox(request: pytest.FixtureRequest, public: Path) -> Sandbox:
    if request.param == "root" and not ROOT:
        pytest.skip("not root here")
    if compiler() is None and os.environ.get("PODSWEEP_REQUIRE_NATIVE") != "1":
        pytest.skip("no C compiler here to build the sandbox")
    binary = public / SANDBOX.name
    shutil.copy(native_sandbox(), binary)
    return Sandbox(request.param == "user", binary, public)


def tree(path: Path) -> list[str]:
    return sorted(str(p.relative_to(path)) for p in path.rglob("*"))


def test_without_volumes_the_command_is_unchanged() -> None:
    command = ["python", "train.py", "--lr", "0.1"]
    wrapped = wrap_command(command, [], "/somewhere")
    assert wrapped == command and wrapped is not command


@needs_cc
def test_the_command_line(src: Path) -> None:
    argv = wrap_command(["python", "train.py"],
                        [Volume(str(src), "/a/b/c", read_only=True), Volume(str(src), "/a")],
                        "/a/b")
    binary = Path(argv[0])
    assert binary.parent == cache_dir() and binary.name.startswith("podsweep-sandbox-")
    assert os.access(binary, os.X_OK)
    # the outer volume first
    assert argv[1:] == ["--bind", str(src), "/a", "--ro-bind", str(src), "/a/b/c",
                        "--chdir", "/a/b", "--", "python", "train.py"]


def test_volumes_need_a_compiler(src: Path, tmp_path: Path,
                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CC", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    monkeypatch.setenv("PODSWEEP_CACHE", str(tmp_path / "cache"))
    with pytest.raises(RuntimeSetupError) as info:
        wrap_command(["true"], [Volume(str(src), "/nfs/hpo")], None)
    assert str(info.value) == ("volumes (-v) need a C compiler to build podsweep's sandbox: "
                               "apt-get install gcc")
    assert wrap_command(["true"], [], None) == ["true"]


def test_a_missing_source_is_refused(tmp_path: Path) -> None:
    with pytest.raises(RuntimeSetupError, match="not a directory or a file"):
        wrap_command(["true"], [Volume(str(tmp_path / "absent"), "/nfs/hpo")], None)


def test_a_volume_appears_where_the_host_has_no_such_directory(sandbox: Sandbox,
                                                               src: Path) -> None:
    if os.path.lexists("/nfs"):
        pytest.skip("this host has a /nfs of its own")
    result = sandbox.run(wrap_command(["sh", "-c", "cat /nfs/hpo/f; touch /nfs/hpo/g; pwd"],
                                      [Volume(str(src), "/nfs/hpo")], "/nfs/hpo"))
    assert result.returncode == 0, result.stderr
    assert result.stdout == "from the host\n/nfs/hpo\n"
    assert (src / "g").exists()          # written through to the host, by its owner
    assert (src / "g").stat().st_uid == (USER if sandbox.as_user and ROOT else os.geteuid())
    assert not os.path.lexists("/nfs")   # and nothing made on the host


def test_a_read_only_volume_cannot_be_written(sandbox: Sandbox, src: Path) -> None:
    argv = wrap_command(["sh", "-c", "cat /psw-ro/f && touch /psw-ro/g"],
                        [Volume(str(src), "/psw-ro", read_only=True)], None)
    result = sandbox.run(argv)
    assert result.returncode != 0
    assert result.stdout == "from the host\n"
    assert "Read-only file system" in result.stderr
    assert tree(src) == ["f"]
    assert not os.path.lexists("/psw-ro")


@needs_root
@needs_cc
def test_a_read_only_volume_covers_what_is_mounted_inside_its_source(src: Path) -> None:
    # A tmpfs mounted inside SRC, in a mount namespace of the test's own (the host's mounts
    # stay as they are).
    (src / "sub").mkdir()
    argv = wrap_command(["sh", "-c", "cat /psw-ro/sub/i && touch /psw-ro/sub/j"],
                        [Volume(str(src), "/psw-ro", read_only=True)], None)
    result = subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "sh", "-c",
         f'mount -t tmpfs psw {src}/sub && echo inner > {src}/sub/i && exec "$@"', "sh",
         *argv], capture_output=True, text=True, timeout=30)
    assert result.stdout == "inner\n", result.stderr
    assert result.returncode != 0 and "Read-only file system" in result.stderr


def test_a_volume_over_an_existing_directory_hides_it_in_the_pod_only(sandbox: Sandbox,
                                                                       src: Path,
                                                                       public: Path) -> None:
    dst = public / "dst"
    dst.mkdir()
    (dst / "mine").write_text("host's own\n")
    result = sandbox.run(wrap_command(["ls", str(dst)], [Volume(str(src), str(dst))], None))
    assert result.returncode == 0, result.stderr
    assert result.stdout == "f\n"
    assert tree(dst) == ["mine"]


def test_a_file_volume_and_nested_volumes(sandbox: Sandbox, src: Path, public: Path) -> None:
    config = public / "config.json"
    config.write_text("{}\n")
    other = public / "other"
    other.mkdir(mode=0o777)
    other.chmod(0o777)
    (other / "o").write_text("other\n")
    (src / "b" / "inner").mkdir(parents=True)     # the inner volume's mount point
    before = tree(src)
    volumes = [Volume(str(other), "/psw-deep/a/b/inner"), Volume(str(config), "/psw-c/c.json"),
               Volume(str(src), "/psw-deep/a", read_only=True)]
    script = ("cat /psw-c/c.json /psw-deep/a/f /psw-deep/a/b/inner/o && "
              "touch /psw-deep/a/b/inner/written")
    result = sandbox.run(wrap_command(["sh", "-c", script], volumes, None))
    assert result.returncode == 0, result.stderr
    assert result.stdout == "{}\nfrom the host\nother\n"
    assert (other / "written").exists()      # the inner volume is not read-only
    assert tree(src) == before
    assert not os.path.lexists("/psw-deep") and not os.path.lexists("/psw-c")


def test_a_mount_point_is_never_made_on_the_host(sandbox: Sandbox, src: Path,
                                                 public: Path) -> None:
    other = public / "other"
    other.mkdir()
    before = tree(public)
    # inside a directory of the host's, and inside another volume's source
    for volumes, missing in [([Volume(str(src), f"{public}/absent/x")], f"{public}/absent"),
                             ([Volume(str(src), "/psw-out"), Volume(str(other), "/psw-out/in")],
                              "/psw-out/in")]:
        result = sandbox.run(wrap_command(["true"], volumes, None))
        assert result.returncode == SANDBOX_SETUP_FAILED
        assert result.stderr.endswith(
            f": {missing} does not exist, and the sandbox makes no mount point on the host's "
            f"file systems (create it first)\n")
        assert result.stderr.startswith("podsweep: volume ") and result.stderr.count("\n") == 1
    assert tree(public) == before
    assert not os.path.lexists("/psw-out")


def test_the_rest_of_the_host_is_as_it_is(sandbox: Sandbox, src: Path, public: Path) -> None:
    # Every top-level entry (symlinks as symlinks), host directories writable, the host's
    # pid namespace: /proc/self is the shell's own pid, which the control plane can signal.
    script = (f"read pid rest < /proc/self/stat; echo $$ $pid > {public}/out; ls -A /; "
              f"echo --; for l in /* /.[!.]*; do [ -L $l ] && echo $l $(readlink $l); done; "
              f"echo --; ls /dev/null /usr/bin/env")
    result = sandbox.run(wrap_command(["sh", "-c", script], [Volume(str(src), "/psw-rest")],
                                      None))
    assert result.returncode == 0, result.stderr
    shell, seen = (public / "out").read_text().split()
    assert shell == seen
    entries, links, rest = result.stdout.split("--\n")
    assert sorted(entries.splitlines()) == sorted([*os.listdir("/"), "psw-rest"])
    assert sorted(links.splitlines()) == sorted(
        f"/{n} {os.readlink('/' + n)}" for n in os.listdir("/") if os.path.islink("/" + n))
    assert rest == "/dev/null\n/usr/bin/env\n"


def test_the_working_directory(sandbox: Sandbox, src: Path) -> None:
    # without --chdir: where it was started (the caller's cwd), as a pod without volumes
    result = sandbox.run(wrap_command(["pwd"], [Volume(str(src), "/psw-wd")], None))
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"{sandbox.cwd}\n"
    result = sandbox.run(wrap_command(["pwd"], [Volume(str(src), "/psw-wd")], "/psw-wd/none"))
    assert result.returncode == 127
    assert result.stderr == ("podsweep: cannot start the pod's command: cannot change into "
                             "/psw-wd/none: No such file or directory\n")


def test_exit_codes_are_the_commands_own(sandbox: Sandbox, src: Path) -> None:
    volumes = [Volume(str(src), "/psw-code")]
    assert sandbox.run(wrap_command(["sh", "-c", "exit 42"], volumes, None)).returncode == 42
    killed = sandbox.run(wrap_command(["sh", "-c", "kill -KILL $$"], volumes, None))
    assert killed.returncode == -signal.SIGKILL
    missing = sandbox.run(wrap_command(["/psw-code/absent"], volumes, None))
    assert missing.returncode == 127
    assert missing.stderr == ("podsweep: cannot start the pod's command: /psw-code/absent: "
                              "No such file or directory\n")
    denied = sandbox.run(wrap_command(["/psw-code/f"], volumes, None))   # not executable
    assert denied.returncode == 126 and "Permission denied" in denied.stderr


def test_a_sigterm_reaches_the_command(sandbox: Sandbox, src: Path) -> None:
    """The sandbox is gone once the command runs: the pod's process is the command."""
    script = ("trap 'echo got TERM; exit 7' TERM; echo ready $$; "
              "while :; do sleep 0.05; done")
    argv = [str(sandbox.binary), *wrap_command(["sh", "-c", script],
                                               [Volume(str(src), "/psw-sig")], None)[1:]]
    if sandbox.as_user and ROOT:
        argv = [*AS_USER, *argv]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True, cwd=sandbox.cwd)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        # setpriv execs too: the process we started is the shell
        assert line == f"ready {proc.pid}\n"
        proc.send_signal(signal.SIGTERM)
        assert proc.stdout.read() == "got TERM\n"
        assert proc.wait(timeout=30) == 7
    finally:
        proc.kill()
        proc.wait()


@needs_root
@needs_cc
def test_as_a_normal_user_it_goes_through_a_user_namespace(src: Path, public: Path) -> None:
    binary = public / SANDBOX.name
    shutil.copy(native_sandbox(), binary)
    argv = wrap_command(["sh", "-c", "id -u; cat /proc/self/uid_map /proc/self/gid_map; "
                         "readlink /proc/self/ns/user; stat -c %u /psw-u/f"],
                        [Volume(str(src), "/psw-u")], None)
    result = subprocess.run([*AS_USER, str(binary), *argv[1:]], capture_output=True,
                            text=True, timeout=30, cwd=public)
    assert result.returncode == 0, result.stderr
    uid, uid_map, gid_map, userns, owner = result.stdout.splitlines()
    assert uid == str(USER)
    assert uid_map.split() == gid_map.split() == [str(USER), str(USER), "1"]  # onto itself
    assert userns != os.readlink("/proc/self/ns/user")
    assert owner == "65534"          # root's file: not mapped, so nobody's


@needs_root
@needs_cc
def test_a_host_that_forbids_mount_namespaces(src: Path, public: Path) -> None:
    # root without CAP_SYS_ADMIN, as in a container without the privilege
    argv = wrap_command(["true"], [Volume(str(src), "/psw-no")], None)
    result = subprocess.run(["setpriv", "--bounding-set=-sys_admin", "--inh-caps=-sys_admin",
                             *argv], capture_output=True, text=True, timeout=30)
    assert result.returncode == SANDBOX_SETUP_FAILED
    assert result.stderr == (
        "podsweep: volumes (-v) need a mount namespace: unshare(CLONE_NEWNS) failed: "
        "Operation not permitted (no CAP_SYS_ADMIN: a container without the privilege?)\n")


@needs_root
@needs_cc
def test_a_host_that_forbids_user_namespaces(src: Path, public: Path) -> None:
    # A normal user in a user namespace of its own whose limit on user namespaces is 0
    # (user.max_user_namespaces is per namespace: the host's stays as it is).
    binary = public / SANDBOX.name
    shutil.copy(native_sandbox(), binary)
    argv = wrap_command(["true"], [Volume(str(src), "/psw-no")], None)
    forbid = ("echo 0 > /proc/sys/user/max_user_namespaces && "
              'exec setpriv --inh-caps=-all --ambient-caps=-all "$@"')
    result = subprocess.run([*AS_USER, "unshare", "--user", "--map-current-user",
                             "--keep-caps", "sh", "-c", forbid, "sh", str(binary), *argv[1:]],
                            capture_output=True, text=True, timeout=30, cwd=public)
    assert result.returncode == SANDBOX_SETUP_FAILED
    assert result.stderr == (
        "podsweep: volumes (-v) need a mount namespace: unshare(CLONE_NEWUSER) failed: No "
        "space left on device (user namespaces disabled: user.max_user_namespaces is 0, or "
        "all used)\n")


@needs_cc
def test_a_sandboxed_pod_gets_its_grace_period(src: Path, tmp_path: Path) -> None:
    """Under a real supervisor: the SIGTERM reaches the command, whose own end is the pod's."""
    script = ("trap 'sleep 0.3; echo clean > /psw-pod/marker; exit 0' TERM; "
              "echo ready; while :; do sleep 0.05; done")
    argv = wrap_command(["sh", "-c", script], [Volume(str(src), "/psw-pod")], "/psw-pod")
    proc = PodProcess.launch(PodLaunch(tmp_path / "pod", argv, dict(os.environ), None,
                                       tmp_path / "pod.log", 5.0))
    try:
        assert proc.pid is not None
        deadline = time.monotonic() + 5
        while "ready" not in (tmp_path / "pod.log").read_text():
            assert time.monotonic() < deadline
            time.sleep(0.01)
        # the pod's process is the command itself, not a sandbox above it
        assert Path(f"/proc/{proc.pid}/cmdline").read_bytes().split(b"\0")[:2] == [b"sh",
                                                                                   b"-c"]
        proc.terminate()
        fd = proc.pidfd()
        assert fd is not None
        with selectors.DefaultSelector() as sel:
            sel.register(fd, selectors.EVENT_READ)
            assert sel.select(5.0)
        os.close(fd)
        assert (src / "marker").read_text() == "clean\n"
        assert proc.exit_code() == 0 and proc.signalled      # the command's own exit
        assert [p for p in map(int, filter(str.isdigit, os.listdir("/proc")))
                if (s := proc_stat(p)) and s[2] == proc.pid and s[0] != "Z"] == []
    finally:
        proc.kill()
    assert not os.path.lexists("/psw-pod")
