-- table events
CREATE TABLE events (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        job_uid TEXT NOT NULL REFERENCES jobs(uid) ON DELETE CASCADE,
        time REAL NOT NULL,
        kind TEXT NOT NULL,
        message TEXT NOT NULL
    );
-- table jobs
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
    , engine_ref TEXT);
-- table members
CREATE TABLE members (
        project TEXT NOT NULL,
        user TEXT NOT NULL REFERENCES users(name) ON DELETE CASCADE,
        PRIMARY KEY (project, user)
    );
-- table meta
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
-- table pods
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
        dir TEXT NOT NULL, fraction TEXT,
        PRIMARY KEY (job_uid, idx, attempt)
    );
-- table projects
CREATE TABLE projects (
        name TEXT PRIMARY KEY,
        gpus INTEGER NOT NULL,
        created REAL NOT NULL
    , cpus INTEGER NOT NULL DEFAULT 0);
-- table sessions
CREATE TABLE sessions (
        hash TEXT PRIMARY KEY,
        user TEXT NOT NULL REFERENCES users(name) ON DELETE CASCADE,
        csrf TEXT NOT NULL,
        created REAL NOT NULL,
        expires REAL NOT NULL
    );
-- table tokens
CREATE TABLE tokens (
        hash TEXT PRIMARY KEY,
        user TEXT NOT NULL REFERENCES users(name) ON DELETE CASCADE,
        created REAL NOT NULL
    );
-- table users
CREATE TABLE users (
        name TEXT PRIMARY KEY,
        admin INTEGER NOT NULL DEFAULT 0,
        password_hash TEXT,
        created REAL NOT NULL
    );
-- index events_job
CREATE INDEX events_job ON events(job_uid, id);
-- index jobs_live_name
CREATE UNIQUE INDEX jobs_live_name ON jobs(project, name) WHERE status != 'Deleted';
-- index pods_active
CREATE INDEX pods_active ON pods(status) WHERE status IN ('Running', 'Terminating');
