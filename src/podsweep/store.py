"""SQLite persistence for the local control plane: users, projects, jobs, pods, events.

One file, ``<home>/podsweep.db``, in WAL mode so that readers never wait on the writer. The
schema is versioned with ``PRAGMA user_version``; the migrations of :mod:`.store_schema`
bring any older file up to date, and a file from a newer podsweep is refused rather than
misread.

The store is used from one thread (the control plane's event loop); it holds no cache, so a
restarted control plane sees exactly what was committed.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import secrets
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

from .errors import Conflict, NotFound, StoreError, disk_full, is_disk_full
from .model import JobSpec, JobStatus, PodStatus, format_gpus
from .store_schema import MIGRATIONS, SCHEMA_VERSION


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class User:
    name: str
    admin: bool
    projects: tuple[str, ...]


@dataclass(frozen=True)
class Project:
    name: str
    gpus: int
    created: float
    cpus: int = 0


@dataclass(frozen=True)
class Job:
    uid: str
    seq: int
    spec: JobSpec
    user: str
    status: JobStatus
    created: float
    finished: float | None
    succeeded: int
    failed: int
    message: str | None
    engine_ref: str | None = None

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def project(self) -> str:
        return self.spec.project


@dataclass(frozen=True)
class Pod:
    job_uid: str
    index: int
    attempt: int
    name: str
    status: PodStatus
    gpus: tuple[int, ...]
    seq: int
    created: float
    finished: float | None
    exit_code: int | None
    reason: str | None
    dir: str
    fraction: Fraction | None = None    # its share of its one GPU; None: its GPUs are whole


@dataclass(frozen=True)
class Event:
    time: float
    kind: str
    message: str


class Store:
    """The control plane's database. Every write commits before the method returns, unless
    the caller holds a :meth:`transaction`: then it commits with that."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self.db.row_factory = sqlite3.Row
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")   # WAL + NORMAL: durable at checkpoints
        self.db.execute("PRAGMA foreign_keys=ON")
        self.db.execute("PRAGMA busy_timeout=5000")
        self._migrate()

    def close(self) -> None:
        self.db.close()

    def _migrate(self) -> None:
        version = int(self.db.execute("PRAGMA user_version").fetchone()[0])
        if version > SCHEMA_VERSION:
            raise StoreError(f"{self.path} was written by a newer podsweep (schema {version}, "
                             f"this one reads up to {SCHEMA_VERSION})")
        for target in range(version + 1, SCHEMA_VERSION + 1):
            # executescript commits on its own: the whole step, version included, is one
            # script inside one transaction
            self.db.executescript(f"BEGIN IMMEDIATE;\n{MIGRATIONS[target]}\n"
                                  f"PRAGMA user_version = {target};\nCOMMIT;")

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One transaction; inside another one it joins it (and commits with it).

        The control plane wraps a whole reconcile in one: every write method's own
        transaction then joins it, and the round costs one commit. On a full disk it raises
        :class:`~podsweep.errors.DiskFull`, all of it rolled back.
        """
        if self.db.in_transaction:
            yield self.db
            return
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield self.db
            self.db.execute("COMMIT")
        except BaseException as exc:
            # A COMMIT that failed (a full disk) may leave the transaction open: rolled back
            # here, or the next BEGIN would fail and every later write with it.
            if self.db.in_transaction:
                with contextlib.suppress(sqlite3.Error):
                    self.db.execute("ROLLBACK")
            if isinstance(exc, sqlite3.Error) and is_disk_full(exc):
                raise disk_full(self.path.parent) from exc
            raise

    # ------------------------------------------------------------ meta

    @staticmethod
    def _next_seq(db: sqlite3.Connection, key: str) -> int:
        """The next number of a counter, inside the caller's transaction."""
        row = db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        value = int(row[0]) + 1 if row else 1
        db.execute("INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)", (key, str(value)))
        return value

    # ------------------------------------------------------------ users and tokens

    def create_user(self, name: str, admin: bool = False,
                    projects: tuple[str, ...] = ()) -> str:
        """Create a user and return a new API token for them (only its hash is stored)."""
        token = secrets.token_urlsafe(32)
        now = time.time()
        with self.transaction() as db:
            db.execute("INSERT INTO users(name, admin, created) VALUES (?, ?, ?)",
                       (name, int(admin), now))
            db.executemany("INSERT INTO members(project, user) VALUES (?, ?)",
                           [(p, name) for p in projects])
            db.execute("INSERT INTO tokens(hash, user, created) VALUES (?, ?, ?)",
                       (hash_token(token), name, now))
        return token

    def user_for_token(self, token: str) -> User | None:
        row = self.db.execute("SELECT users.name, users.admin FROM tokens JOIN users "
                              "ON users.name = tokens.user WHERE tokens.hash = ?",
                              (hash_token(token),)).fetchone()
        return self.user(row["name"]) if row else None

    def user(self, name: str) -> User | None:
        row = self.db.execute("SELECT name, admin FROM users WHERE name = ?", (name,)).fetchone()
        if row is None:
            return None
        projects = tuple(r[0] for r in self.db.execute(
            "SELECT project FROM members WHERE user = ? ORDER BY project", (name,)))
        return User(row["name"], bool(row["admin"]), projects)

    def users(self) -> list[User]:
        names = [r[0] for r in self.db.execute("SELECT name FROM users ORDER BY name")]
        return [u for u in (self.user(n) for n in names) if u is not None]

    def set_password(self, user: str, password_hash: str) -> None:
        with self.transaction() as db:
            db.execute("UPDATE users SET password_hash = ? WHERE name = ?",
                       (password_hash, user))
            db.execute("DELETE FROM sessions WHERE user = ?", (user,))

    def password_hash(self, user: str) -> str | None:
        row = self.db.execute("SELECT password_hash FROM users WHERE name = ?",
                              (user,)).fetchone()
        return row[0] if row else None

    def create_session(self, user: str, lifetime: float) -> tuple[str, str]:
        """A new browser session: (its secret, its CSRF token). Only a hash is stored."""
        secret, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
        now = time.time()
        with self.transaction() as db:
            db.execute("DELETE FROM sessions WHERE expires < ?", (now,))
            db.execute("INSERT INTO sessions(hash, user, csrf, created, expires) "
                       "VALUES (?, ?, ?, ?, ?)",
                       (hash_token(secret), user, csrf, now, now + lifetime))
        return secret, csrf

    def session(self, secret: str) -> tuple[User, str] | None:
        row = self.db.execute("SELECT user, csrf FROM sessions WHERE hash = ? AND expires > ?",
                              (hash_token(secret), time.time())).fetchone()
        user = self.user(row["user"]) if row else None
        return (user, row["csrf"]) if user and row else None

    def end_session(self, secret: str) -> None:
        with self.transaction() as db:
            db.execute("DELETE FROM sessions WHERE hash = ?", (hash_token(secret),))

    def add_member(self, project: str, user: str) -> None:
        with self.transaction() as db:
            db.execute("INSERT OR IGNORE INTO members(project, user) VALUES (?, ?)",
                       (project, user))

    def remove_member(self, project: str, user: str) -> None:
        """Take ``user`` out of ``project``: its jobs stay, they lose sight of them at once.

        Raises NotFound when the user is not a member (or either does not exist).
        """
        with self.transaction() as db:
            gone = db.execute("DELETE FROM members WHERE project = ? AND user = ?",
                              (project, user)).rowcount
        if not gone:
            raise NotFound(f"user {user!r} is not a member of project {project!r}")

    def delete_user(self, name: str) -> None:
        """Delete a user with their tokens, sessions and memberships (the schema's cascades);
        the jobs they submitted keep their name as history.

        Raises NotFound for no such user, Conflict for the last admin (no one could manage
        the control plane any more). One transaction: two admins deleting each other cannot
        both succeed.
        """
        with self.transaction() as db:
            row = db.execute("SELECT admin FROM users WHERE name = ?", (name,)).fetchone()
            if row is None:
                raise NotFound(f"user {name!r} not found")
            admins = db.execute("SELECT COUNT(*) FROM users WHERE admin = 1").fetchone()[0]
            if row["admin"] and admins <= 1:
                raise Conflict(f"user {name!r} is the last admin; make another admin first")
            db.execute("DELETE FROM users WHERE name = ?", (name,))

    def revoke_tokens(self, name: str) -> int:
        """Remove every API token of a user (they stop working at once; web sessions, which
        the password opened, stay); returns how many there were. NotFound for no user."""
        with self.transaction() as db:
            if db.execute("SELECT 1 FROM users WHERE name = ?", (name,)).fetchone() is None:
                raise NotFound(f"user {name!r} not found")
            return int(db.execute("DELETE FROM tokens WHERE user = ?", (name,)).rowcount)

    def rotate_token(self, name: str) -> str:
        """Replace every API token of a user by a new one, which is returned (only its hash
        is stored). NotFound for no user."""
        token = secrets.token_urlsafe(32)
        with self.transaction() as db:
            self.revoke_tokens(name)
            db.execute("INSERT INTO tokens(hash, user, created) VALUES (?, ?, ?)",
                       (hash_token(token), name, time.time()))
        return token

    # ------------------------------------------------------------ projects

    def create_project(self, name: str, gpus: int, cpus: int = 0) -> Project:
        now = time.time()
        with self.transaction() as db:
            db.execute("INSERT INTO projects(name, gpus, created, cpus) VALUES (?, ?, ?, ?)",
                       (name, gpus, now, cpus))
        return Project(name, gpus, now, cpus)

    def set_quota(self, name: str, gpus: int | None = None, cpus: int | None = None) -> None:
        """Set the quotas given; None leaves that one as it is."""
        with self.transaction() as db:
            db.execute("UPDATE projects SET gpus = coalesce(?, gpus), cpus = coalesce(?, cpus) "
                       "WHERE name = ?", (gpus, cpus, name))

    @staticmethod
    def _project(row: sqlite3.Row) -> Project:
        return Project(row["name"], row["gpus"], row["created"], row["cpus"])

    def project(self, name: str) -> Project | None:
        row = self.db.execute("SELECT * FROM projects WHERE name = ?", (name,)).fetchone()
        return self._project(row) if row else None

    def projects(self) -> list[Project]:
        return [self._project(r)
                for r in self.db.execute("SELECT * FROM projects ORDER BY name")]

    # ------------------------------------------------------------ jobs

    def insert_job(self, uid: str, spec: JobSpec, user: str) -> Job:
        now = time.time()
        with self.transaction() as db:
            seq = self._next_seq(db, "job_seq")
            db.execute("INSERT INTO jobs(uid, seq, name, project, user, spec, status, created) "
                       "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                       (uid, seq, spec.name, spec.project, user, json.dumps(spec.to_dict()),
                        JobStatus.PENDING.value, now))
            self._event(db, uid, "Submitted", f"{spec.completions} pods, at most "
                        f"{spec.parallelism} at a time, {format_gpus(spec.gpus)} GPU(s) each")
        job = self.job(uid)
        assert job is not None
        return job

    @staticmethod
    def _job(row: sqlite3.Row) -> Job:
        return Job(row["uid"], row["seq"], JobSpec.from_dict(json.loads(row["spec"])),
                   row["user"], JobStatus(row["status"]), row["created"], row["finished"],
                   row["succeeded"], row["failed"], row["message"], row["engine_ref"])

    def job(self, uid: str) -> Job | None:
        row = self.db.execute("SELECT * FROM jobs WHERE uid = ?", (uid,)).fetchone()
        return self._job(row) if row else None

    def job_by_name(self, project: str, name: str) -> Job | None:
        row = self.db.execute("SELECT * FROM jobs WHERE project = ? AND name = ? AND "
                              "status != 'Deleted'", (project, name)).fetchone()
        return self._job(row) if row else None

    def jobs(self, projects: list[str] | None = None, include_done: bool = True) -> list[Job]:
        sql = "SELECT * FROM jobs WHERE status != 'Deleted'"
        args: list[Any] = []
        if projects is not None:
            sql += f" AND project IN ({','.join('?' * len(projects))})"
            args += projects
        if not include_done:
            sql += " AND status IN ('Pending', 'Running')"
        return [self._job(r) for r in self.db.execute(sql + " ORDER BY seq", args)]

    def update_job(self, uid: str, **fields: Any) -> None:
        if "status" in fields and isinstance(fields["status"], JobStatus):
            fields["status"] = fields["status"].value
        sets = ", ".join(f"{k} = ?" for k in fields)
        with self.transaction() as db:
            db.execute(f"UPDATE jobs SET {sets} WHERE uid = ?", (*fields.values(), uid))

    # ------------------------------------------------------------ pods

    @staticmethod
    def _pod(row: sqlite3.Row) -> Pod:
        return Pod(row["job_uid"], row["idx"], row["attempt"], row["name"],
                   PodStatus(row["status"]), tuple(json.loads(row["gpus"])), row["seq"],
                   row["created"], row["finished"], row["exit_code"], row["reason"], row["dir"],
                   Fraction(row["fraction"]) if row["fraction"] is not None else None)

    def insert_pod(self, job_uid: str, index: int, attempt: int, name: str,
                   gpus: tuple[int, ...], pod_dir: str,
                   fraction: Fraction | None = None) -> Pod:
        now = time.time()
        with self.transaction() as db:
            seq = self._next_seq(db, "pod_seq")
            db.execute("INSERT INTO pods(job_uid, idx, attempt, name, status, gpus, seq, "
                       "created, dir, fraction) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                       (job_uid, index, attempt, name, PodStatus.RUNNING.value,
                        json.dumps(list(gpus)), seq, now, pod_dir,
                        str(fraction) if fraction is not None else None))
        return Pod(job_uid, index, attempt, name, PodStatus.RUNNING, gpus, seq, now, None,
                   None, None, pod_dir, fraction)

    def pods(self, job_uid: str, limit: int | None = None) -> list[Pod]:
        """A job's pods by index and attempt; with ``limit``, only its running ones and the
        latest started, ``limit`` in all."""
        if limit is None:
            return [self._pod(r) for r in self.db.execute(
                "SELECT * FROM pods WHERE job_uid = ? ORDER BY idx, attempt", (job_uid,))]
        return [self._pod(r) for r in self.db.execute(
            "SELECT * FROM (SELECT * FROM pods WHERE job_uid = ? ORDER BY status IN "
            "('Running', 'Terminating') DESC, seq DESC LIMIT ?) ORDER BY idx, attempt",
            (job_uid, limit))]

    def active_pods(self) -> list[Pod]:
        return [self._pod(r) for r in self.db.execute(
            "SELECT * FROM pods WHERE status IN ('Running', 'Terminating') ORDER BY seq")]

    def pod(self, job_uid: str, name: str) -> Pod | None:
        row = self.db.execute("SELECT * FROM pods WHERE job_uid = ? AND name = ?",
                              (job_uid, name)).fetchone()
        return self._pod(row) if row else None

    def update_pod(self, pod: Pod, **fields: Any) -> None:
        if "status" in fields and isinstance(fields["status"], PodStatus):
            fields["status"] = fields["status"].value
        sets = ", ".join(f"{k} = ?" for k in fields)
        with self.transaction() as db:
            db.execute(f"UPDATE pods SET {sets} WHERE job_uid = ? AND idx = ? AND attempt = ?",
                       (*fields.values(), pod.job_uid, pod.index, pod.attempt))

    # ------------------------------------------------------------ events

    @staticmethod
    def _event(db: sqlite3.Connection, job_uid: str, kind: str, message: str) -> None:
        db.execute("INSERT INTO events(job_uid, time, kind, message) VALUES (?, ?, ?, ?)",
                   (job_uid, time.time(), kind, message))

    def event(self, job_uid: str, kind: str, message: str) -> None:
        with self.transaction() as db:
            self._event(db, job_uid, kind, message)

    def events(self, job_uid: str, limit: int = -1) -> list[Event]:
        """A job's events, oldest first; with ``limit``, its latest ``limit``."""
        return [Event(r["time"], r["kind"], r["message"]) for r in self.db.execute(
            "SELECT time, kind, message FROM (SELECT id, time, kind, message FROM events "
            "WHERE job_uid = ? ORDER BY id DESC LIMIT ?) ORDER BY id", (job_uid, limit))]
