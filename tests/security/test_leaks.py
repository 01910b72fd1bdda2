"""Issue 10, item 8: the smaller leaks, closed, on a real control plane on loopback.

- a non-admin sees no pod of another project on the GPUs (``status``, the API, the Cluster
  page), only that the GPU is in use;
- every ``podsweep up`` makes the home 0700 and its files 0600, and refuses a home owned
  by another user;
- ``podsweep login`` never takes the token as an argument, which ``ps`` shows every user;
- an admin deletes a user, removes a member, revokes or rotates a token (CLI and API), and
  the old token is refused (401) from the next request on.
"""

from __future__ import annotations

import json
import os
import pty
import pwd
import re
import select
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from ..control.conftest import PODSWEEP, ControlPlane


@pytest.fixture
def plane(tmp_path: Path) -> Iterator[ControlPlane]:
    cp = ControlPlane(tmp_path / "home")
    cp.run("up", "--gpus", "2")
    yield cp
    cp.stop()


def url(plane: ControlPlane) -> str:
    return str(json.loads((plane.home / "server.json").read_text())["url"])


def admin_token(plane: ControlPlane) -> str:
    return str(json.loads((plane.home / "credentials.json").read_text())["token"])


def new_user(plane: ControlPlane, name: str, *projects: str) -> tuple[str, str]:
    """(token, web password) of a new user, read from what ``user create`` prints."""
    args = [a for p in projects for a in ("-p", p)]
    out = plane.run("user", "create", name, *args).stdout
    token = re.search(r"^  CLI token: (\S+)$", out, re.M)
    password = re.search(r"^  web UI password: (\S+)$", out, re.M)
    assert token and password, out
    assert "podsweep login" in out and "--token -" in out     # says how to log in with it
    return token.group(1), password.group(1)


def api(plane: ControlPlane, method: str, path: str, token: str) -> httpx.Response:
    return httpx.request(method, f"{url(plane)}/api/v1{path}",
                         headers={"Authorization": f"Bearer {token}"}, timeout=30)


def one_line_error(proc: subprocess.CompletedProcess[str], code: int, *words: str) -> None:
    assert proc.returncode == code, (proc.returncode, proc.stdout, proc.stderr)
    assert proc.stderr.startswith("error: ") and len(proc.stderr.splitlines()) == 1, \
        proc.stderr
    for word in words:
        assert word in proc.stderr, proc.stderr


def mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


# ------------------------------------------------------------------ GPUs of other projects

def test_a_user_sees_no_pod_of_another_project_on_the_gpus(plane: ControlPlane):
    plane.run("project", "create", "team-a", "--gpus", "1")
    plane.run("project", "create", "team-b", "--gpus", "1")
    token, password = new_user(plane, "alice", "team-a")
    plane.run("submit", "secret-plan", "-p", "team-b", "-g", "1", "--", "sleep", "60")
    plane.run("submit", "mine", "-p", "team-a", "-g", "1", "--", "sleep", "60", token=token)
    plane.until("both running", lambda: all(
        plane.job(n, p)["job"]["running"] == 1 for n, p in (("secret-plan", "team-b"),
                                                            ("mine", "team-a"))))

    seen = plane.json("status", token=token)
    assert "secret" not in json.dumps(seen) and "team-b" not in json.dumps(seen)
    gpus = sorted(seen["gpus"], key=lambda g: g["pod"] or "")
    assert (gpus[0]["in_use"], gpus[0]["pod"], gpus[0]["project"]) == (True, None, None)
    assert gpus[1]["in_use"] and gpus[1]["pod"].startswith("mine-")
    assert gpus[1]["project"] == "team-a"
    table = plane.run("status", token=token).stdout
    assert "secret" not in table and "in use" in table and "mine-" in table

    admin = plane.json("status")                 # the admin sees every holder
    assert sorted((g["pod"] or "").split("-")[0] for g in admin["gpus"]) == ["mine", "secret"]
    assert sorted(g["project"] for g in admin["gpus"]) == ["team-a", "team-b"]

    # the Cluster page, as alice's browser gets it
    with httpx.Client(base_url=url(plane), timeout=30) as web:
        web.post("/login", data={"username": "alice", "password": password})
        page = web.get("/cluster")
        assert page.status_code == 200 and "Cluster" in page.text
        assert "secret" not in page.text and "team-b" not in page.text
        assert "in use (another project)" in page.text and "mine-0-0" in page.text


# ------------------------------------------------------------------ the home's modes

def test_up_makes_a_loose_home_private_again(plane: ControlPlane):
    home = plane.home
    files = [p for p in home.iterdir() if p.is_file()]
    names = {p.name for p in files}
    assert {"podsweep.db", "credentials.json", "config.json", "server.json",
            "server.log"} <= names, names
    # a fresh home is private from its first up
    assert mode(home) == 0o700
    assert {p.name: mode(p) for p in files} == {p.name: 0o600 for p in files}

    # loosened while the control plane runs: the next up (a no-op otherwise) closes it
    home.chmod(0o755)
    (home / "podsweep.db").chmod(0o644)
    assert "already running" in plane.run("up").stdout
    assert mode(home) == 0o700 and mode(home / "podsweep.db") == 0o600

    # loosened while it is down, as an older podsweep left it: up closes every file
    plane.run("down")
    home.chmod(0o755)
    for p in home.iterdir():
        if p.is_file():
            p.chmod(0o644)
    (home / "notes.txt").write_text("mine")
    (home / "notes.txt").chmod(0o666)
    plane.run("up")
    assert mode(home) == 0o700
    files = [p for p in home.iterdir() if p.is_file()]
    assert {p.name: mode(p) for p in files} == {p.name: 0o600 for p in files}
    assert (home / "notes.txt").read_text() == "mine"       # closed, not changed
    assert plane.json("project", "list") == []             # and the plane works


@pytest.fixture
def nobody() -> int:
    if os.geteuid() != 0:
        pytest.skip("needs root to give a directory to another user")
    try:
        return pwd.getpwnam("nobody").pw_uid
    except KeyError:
        pytest.skip("no user 'nobody' on this machine")


def test_a_home_owned_by_another_user_is_refused(tmp_path: Path, nobody: int):
    home = tmp_path / "theirs"
    home.mkdir(mode=0o755)
    (home / "config.json").write_text("{}")
    os.chown(home, nobody, -1)
    plane = ControlPlane(home)
    refused = plane.run("up", check=False)
    one_line_error(refused, 2, f"the podsweep home {home} belongs to nobody")
    assert mode(home) == 0o755 and sorted(p.name for p in home.iterdir()) == ["config.json"]

    # the control plane itself refuses it too, whoever starts it
    started = subprocess.run([sys.executable, "-m", "podsweep.server", "--home", str(home)],
                             capture_output=True, text=True, timeout=60)
    assert started.returncode == 2
    assert started.stderr.splitlines()[-1].endswith(
        f"refused: the podsweep home {home} belongs to nobody (uid {nobody}), not to you "
        f"(root (uid 0)); use a home of your own (PODSWEEP_HOME)"), started.stderr
    assert sorted(p.name for p in home.iterdir()) == ["config.json"]   # no database made

    # a file in our own home that someone else owns is refused as well
    home.chmod(0o700)
    os.chown(home, 0, -1)
    os.chown(home / "config.json", nobody, -1)
    one_line_error(plane.run("up", check=False), 2, "config.json in the podsweep home "
                                                    "belongs to nobody")


# ------------------------------------------------------------------ login without argv

def cli_env(plane: ControlPlane, home: Path) -> dict[str, str]:
    """The environment of alice's own CLI: her home, the control plane's URL."""
    return {**plane.env, "PODSWEEP_HOME": str(home), "PODSWEEP_URL": url(plane)}


def test_login_never_takes_the_token_as_an_argument(plane: ControlPlane, tmp_path: Path):
    plane.run("project", "create", "team-a")
    token, _ = new_user(plane, "alice", "team-a")
    env = cli_env(plane, tmp_path / "alice")
    credentials = tmp_path / "alice" / "credentials.json"

    refused = subprocess.run([PODSWEEP, "login", "--token", token], env=env,
                             capture_output=True, text=True, timeout=60)
    one_line_error(refused, 2, "shows in ps", "--token -", "PODSWEEP_TOKEN", "prompt")
    assert not credentials.exists()

    # from standard input: while it waits for the token, its arguments do not hold it
    proc = subprocess.Popen([PODSWEEP, "login", "--token", "-"], env=env, text=True,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    cmdline = plane.until("its arguments in /proc",
                          lambda: Path(f"/proc/{proc.pid}/cmdline").read_bytes())
    assert b"login" in cmdline.split(b"\0") and token.encode() not in cmdline
    out, err = proc.communicate(token + "\n", timeout=60)
    assert proc.returncode == 0 and out == "Logged in as alice (projects: team-a)\n", err
    assert json.loads(credentials.read_text()) == {"user": "alice", "token": token}
    assert mode(credentials) == 0o600
    listed = subprocess.run([PODSWEEP, "project", "list", "-o", "json"], env=env,
                            capture_output=True, text=True, timeout=60)
    assert [p["name"] for p in json.loads(listed.stdout)] == ["team-a"]

    # from the environment
    credentials.unlink()
    by_env = subprocess.run([PODSWEEP, "login"], env={**env, "PODSWEEP_TOKEN": token},
                            stdin=subprocess.DEVNULL, capture_output=True, text=True,
                            timeout=60)
    assert by_env.returncode == 0 and "Logged in as alice" in by_env.stdout, by_env.stderr
    assert json.loads(credentials.read_text())["token"] == token

    # nothing to read: one line that says how; a wrong token changes nothing
    for args, stdin, code, words in ((["login"], "", 2, "no token"),
                                     (["login", "--token", "-"], "\n", 2, "token is empty"),
                                     (["login", "--token", "-"], "wrong\n", 4, "invalid token")):
        bad = subprocess.run([PODSWEEP, *args], env=env, input=stdin, capture_output=True,
                             text=True, timeout=60)
        one_line_error(bad, code, words)
    assert json.loads(credentials.read_text())["token"] == token


def test_login_prompts_for_the_token_in_a_terminal(plane: ControlPlane, tmp_path: Path):
    plane.run("project", "create", "team-a")
    token, _ = new_user(plane, "alice", "team-a")
    env = cli_env(plane, tmp_path / "alice")
    pid, fd = pty.fork()
    if pid == 0:                   # the child: a terminal of its own, as a user's shell
        os.execve(PODSWEEP, [PODSWEEP, "login"], env)
    try:
        seen = read_until(fd, b"Token")
        os.write(fd, token.encode() + b"\n")
        seen += read_until(fd, b"Logged in as alice")
    finally:
        _, status = os.waitpid(pid, 0)
        os.close(fd)
    assert os.waitstatus_to_exitcode(status) == 0
    assert token.encode() not in seen            # the prompt does not echo it
    assert json.loads((tmp_path / "alice" / "credentials.json").read_text())["token"] == token


def read_until(fd: int, wanted: bytes, timeout: float = 60) -> bytes:
    out = b""
    deadline = time.monotonic() + timeout
    while wanted not in out:
        ready, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
        if not ready:
            raise AssertionError(f"no {wanted!r} in {out!r}")
        try:
            chunk = os.read(fd, 4096)
        except OSError:            # the child closed the terminal
            chunk = b""
        if not chunk:
            raise AssertionError(f"no {wanted!r} in {out!r} (closed)")
        out += chunk
    return out


# ------------------------------------------------------------------ taking access away

def test_the_admin_takes_access_away_with_the_cli(plane: ControlPlane):
    plane.run("project", "create", "team-a")
    plane.run("project", "create", "team-b")
    alice, _ = new_user(plane, "alice", "team-a", "team-b")
    plane.run("submit", "a1", "-p", "team-a", "--", "true", token=alice)

    # remove a member: she loses sight of the project at once
    out = plane.run("project", "remove-member", "team-b", "alice").stdout
    assert out == "alice is no longer a member of project team-b\n"
    assert [p["name"] for p in plane.json("project", "list", token=alice)] == ["team-a"]
    one_line_error(plane.run("submit", "b1", "-p", "team-b", "--", "true", token=alice,
                             check=False), 4, "not a member of project 'team-b'")
    one_line_error(plane.run("project", "remove-member", "team-b", "alice", check=False),
                   3, "not a member")
    one_line_error(plane.run("project", "remove-member", "team-x", "alice", check=False),
                   3, "project 'team-x' not found")

    # rotate: the old token is refused from the next request, the new one works
    out = plane.run("user", "rotate-token", "alice").stdout
    rotated = re.search(r"^  CLI token: (\S+)$", out, re.M).group(1)
    assert rotated != alice
    one_line_error(plane.run("list", "-A", token=alice, check=False), 4, "invalid token")
    assert api(plane, "GET", "/whoami", alice).status_code == 401
    assert api(plane, "GET", "/whoami", rotated).json()["name"] == "alice"

    # revoke: no token of hers works
    assert plane.run("user", "revoke-token", "alice").stdout == "Revoked 1 token(s) of alice\n"
    assert api(plane, "GET", "/whoami", rotated).status_code == 401
    fresh = re.search(r"CLI token: (\S+)",
                      plane.run("user", "rotate-token", "alice").stdout).group(1)
    assert api(plane, "GET", "/whoami", fresh).status_code == 200

    # delete: her token dies with her, her job stays as history
    assert plane.run("user", "delete", "alice").stdout == "User alice deleted (their jobs stay)\n"
    assert api(plane, "GET", "/whoami", fresh).status_code == 401
    assert [u["name"] for u in plane.json("user", "list")] == ["admin"]
    assert [(j["name"], j["user"]) for j in plane.json("list", "-A")] == [("a1", "alice")]
    one_line_error(plane.run("user", "delete", "alice", check=False), 3, "'alice' not found")
    one_line_error(plane.run("user", "rotate-token", "alice", check=False), 3, "not found")

    # the last admin cannot go; one of two can, and a non-admin may do none of it
    one_line_error(plane.run("user", "delete", "admin", check=False), 2, "the last admin")
    plane.run("user", "create", "root2", "--admin")
    bob, _ = new_user(plane, "bob", "team-a")
    for args in (["user", "delete", "root2"], ["user", "rotate-token", "admin"],
                 ["user", "revoke-token", "admin"], ["project", "remove-member", "team-a",
                                                     "bob"]):
        one_line_error(plane.run(*args, token=bob, check=False), 4, "not an admin")
    assert plane.run("user", "delete", "root2").returncode == 0
    assert plane.json("status")["admin"] is True

    # an admin who rotates their own token stays logged in: the CLI keeps the new one
    before = admin_token(plane)
    out = plane.run("user", "rotate-token", "admin").stdout
    assert "holds the new token" in out
    assert admin_token(plane) != before and api(plane, "GET", "/whoami", before).status_code == 401
    assert plane.json("status")["user"] == "admin"


def test_the_admin_takes_access_away_with_the_api(plane: ControlPlane):
    plane.run("project", "create", "team-a")
    bob, _ = new_user(plane, "bob", "team-a")
    admin = admin_token(plane)

    refused = api(plane, "DELETE", "/users/admin", bob)
    assert refused.status_code == 403 and refused.json() == {
        "detail": "user 'bob' is not an admin", "error": "Forbidden"}
    last = api(plane, "DELETE", "/users/admin", admin)
    assert last.status_code == 409 and "last admin" in last.json()["detail"]

    rotated = api(plane, "POST", "/users/bob/token", admin)
    assert rotated.status_code == 200 and rotated.json()["name"] == "bob"
    new = rotated.json()["token"]
    assert api(plane, "GET", "/whoami", bob).status_code == 401
    assert api(plane, "GET", "/whoami", new).json()["projects"] == ["team-a"]

    gone = api(plane, "DELETE", "/projects/team-a/members/bob", admin)
    assert gone.status_code == 200 and gone.json() == {"project": "team-a", "removed": "bob"}
    assert api(plane, "GET", "/whoami", new).json()["projects"] == []
    assert api(plane, "DELETE", "/projects/team-a/members/bob", admin).status_code == 404
    assert api(plane, "DELETE", "/projects/team-a/members/nobody", admin).json() == {
        "detail": "user 'nobody' not found", "error": "NotFound"}

    revoked = api(plane, "DELETE", "/users/bob/token", admin)
    assert revoked.json() == {"name": "bob", "revoked": 1}
    assert api(plane, "GET", "/whoami", new).status_code == 401

    assert api(plane, "DELETE", "/users/bob", admin).json() == {"deleted": "bob"}
    assert [u["name"] for u in api(plane, "GET", "/users", admin).json()] == ["admin"]
    assert api(plane, "DELETE", "/users/bob", admin).status_code == 404
    # a new user of the same name starts with nothing of the old one's
    again, _ = new_user(plane, "bob")
    assert api(plane, "GET", "/whoami", again).json()["projects"] == []
