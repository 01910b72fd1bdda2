"""The store's schema: each version's migration, applied in order by :class:`~.store.Store`.

A version is never edited once released: a change is a new version, its SQL appended here
and its whole schema frozen in ``tests/golden/schema-vN.sql``.
"""

from __future__ import annotations

SCHEMA_VERSION = 6

MIGRATIONS: dict[int, str] = {
    1: """
    CREATE TABLE users (
        name TEXT PRIMARY KEY,
        admin INTEGER NOT NULL DEFAULT 0,
        password_hash TEXT,
        created REAL NOT NULL
    );
    CREATE TABLE tokens (
        hash TEXT PRIMARY KEY,
        user TEXT NOT NULL REFERENCES users(name) ON DELETE CASCADE,
        created REAL NOT NULL
    );
    CREATE TABLE projects (
        name TEXT PRIMARY KEY,
        gpus INTEGER NOT NULL,
        created REAL NOT NULL
    );
    CREATE TABLE members (
        project TEXT NOT NULL REFERENCES projects(name) ON DELETE CASCADE,
        user TEXT NOT NULL REFERENCES users(name) ON DELETE CASCADE,
        PRIMARY KEY (project, user)
    );
    CREATE TABLE jobs (
        uid TEXT PRIMARY KEY,
        seq INTEGER NOT NULL UNIQUE,
        name TEXT NOT NULL,
        project TEXT NOT NULL REFERENCES projects(name),
        user TEXT NOT NULL,
        spec TEXT NOT NULL,
        status TEXT NOT NULL,
        created REAL NOT NULL,
        finished REAL,
        succeeded INTEGER NOT NULL DEFAULT 0,
        failed INTEGER NOT NULL DEFAULT 0,
        message TEXT
    );
    CREATE UNIQUE INDEX jobs_live_name ON jobs(project, name) WHERE status != 'Deleted';
    CREATE TABLE pods (
        job_uid TEXT NOT NULL REFERENCES jobs(uid) ON DELETE CASCADE,
        idx INTEGER NOT NULL,
        attempt INTEGER NOT NULL,
        name TEXT NOT NULL,
        status TEXT NOT NULL,
        gpus TEXT NOT NULL,
        seq INTEGER NOT NULL,
        created REAL NOT NULL,
        finished REAL,
        exit_code INTEGER,
        reason TEXT,
        dir TEXT NOT NULL,
        PRIMARY KEY (job_uid, idx, attempt)
    );
    CREATE INDEX pods_active ON pods(status) WHERE status IN ('Running', 'Terminating');
    CREATE TABLE events (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        job_uid TEXT NOT NULL REFERENCES jobs(uid) ON DELETE CASCADE,
        time REAL NOT NULL,
        kind TEXT NOT NULL,
        message TEXT NOT NULL
    );
    CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
    """,
    2: """
    CREATE TABLE sessions (
        hash TEXT PRIMARY KEY,
        user TEXT NOT NULL REFERENCES users(name) ON DELETE CASCADE,
        csrf TEXT NOT NULL,
        created REAL NOT NULL,
        expires REAL NOT NULL
    );
    """,
    # what the cluster engine calls the job (Slurm: its array job id); NULL on the local
    # cluster, where the job is podsweep's own
    3: """
    ALTER TABLE jobs ADD COLUMN engine_ref TEXT;
    """,
    # a project's CPU quota beside its GPU quota; 0, like a GPU quota of 0, lets it only
    # borrow idle CPUs, which is what every project did before CPUs were scheduled
    # ... and a job's events by the job: a job of 100,000 pods has 200,000 of them, and
    # `podsweep get` of any job scanned every event of every job
    4: """
    ALTER TABLE projects ADD COLUMN cpus INTEGER NOT NULL DEFAULT 0;
    CREATE INDEX events_job ON events(job_uid, id);
    """,
    # a membership names a project of the cluster, which need not be the store's: Kubernetes
    # keeps its projects in its API server, and a member of one failed the foreign key (the
    # server checks that the project exists, by the cluster, before it adds a member). No
    # project is ever deleted, so nothing is lost with the cascade.
    5: """
    ALTER TABLE members RENAME TO members_v4;
    CREATE TABLE members (
        project TEXT NOT NULL,
        user TEXT NOT NULL REFERENCES users(name) ON DELETE CASCADE,
        PRIMARY KEY (project, user)
    );
    INSERT INTO members(project, user) SELECT project, user FROM members_v4;
    DROP TABLE members_v4;
    """,
    # a pod's share of its one GPU, as an exact fraction ("1/2", "1/3"); NULL for a pod of
    # whole GPUs, which every pod before fractions was
    6: """
    ALTER TABLE pods ADD COLUMN fraction TEXT;
    """,
}
