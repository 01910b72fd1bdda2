"""The control plane's database: its schema is pinned, old files load, newer are refused."""

from __future__ import annotations

import sqlite3
from fractions import Fraction
from pathlib import Path

import pytest

from podsweep.model import JobSpec, JobStatus, PodStatus
from podsweep.store import SCHEMA_VERSION, Store, StoreError

GOLDENS = Path(__file__).resolve().parents[1] / "golden"
GOLDEN = GOLDENS / f"schema-v{SCHEMA_VERSION}.sql"


def schema(db: sqlite3.Connection) -> str:
    # tables before indexes, so that the golden file replays as a script
    rows = db.execute("SELECT type, name, sql FROM sqlite_master WHERE sql IS NOT NULL AND "
                      "name NOT LIKE 'sqlite_%' ORDER BY type DESC, name").fetchall()
    return "".join(f"-- {kind} {name}\n{sql};\n" for kind, name, sql in rows)


def test_a_new_database_has_exactly_the_golden_schema(tmp_path):
    store = Store(tmp_path / "podsweep.db")
    assert schema(store.db) == GOLDEN.read_text()
    assert store.db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert store.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


@pytest.mark.parametrize("version", range(1, SCHEMA_VERSION + 1))
def test_a_database_of_every_schema_version_loads_and_keeps_its_rows(tmp_path, version):
    path = tmp_path / "old.db"
    db = sqlite3.connect(path)
    db.executescript((GOLDENS / f"schema-v{version}.sql").read_text())
    db.execute(f"PRAGMA user_version = {version}")
    db.execute("INSERT INTO projects(name, gpus, created) VALUES ('team-a', 2, 0)")
    db.execute("INSERT INTO users(name, created) VALUES ('alice', 0)")
    db.execute("INSERT INTO members(project, user) VALUES ('team-a', 'alice')")
    db.commit()
    db.close()
    store = Store(path)
    assert [(p.name, p.gpus) for p in store.projects()] == [("team-a", 2)]
    assert store.user("alice").projects == ("team-a",)
    job = store.insert_job("u1", JobSpec(name="hpo1", project="team-a", command=["true"]), "me")
    pod = store.insert_pod(job.uid, 0, 0, "hpo1-0-0", (1,), "/tmp/x")
    store.update_pod(pod, status=PodStatus.SUCCEEDED, exit_code=0)
    store.update_job(job.uid, status=JobStatus.SUCCEEDED)
    again = Store(path)
    assert schema(again.db) == GOLDEN.read_text()      # migrated to the current schema
    assert again.job("u1").status is JobStatus.SUCCEEDED
    assert again.pods("u1")[0].status is PodStatus.SUCCEEDED


def test_a_database_from_a_newer_podsweep_is_refused_untouched(tmp_path):
    path = tmp_path / "new.db"
    db = sqlite3.connect(path)
    db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    db.close()
    with pytest.raises(StoreError, match="newer podsweep"):
        Store(path)
    assert sqlite3.connect(path).execute("PRAGMA user_version").fetchone()[0] == \
        SCHEMA_VERSION + 1


def test_a_member_of_a_project_the_store_does_not_hold(tmp_path):
    """Kubernetes keeps its projects in its API server: the server checks that a project
    exists, by the cluster, and the store keeps the membership."""
    store = Store(tmp_path / "db")
    store.create_user("alice", projects=("team-a",))
    store.add_member("team-b", "alice")
    assert store.projects() == []
    assert store.user("alice").projects == ("team-a", "team-b")
    store.delete_user("alice")
    assert store.db.execute("SELECT count(*) FROM members").fetchone()[0] == 0


def test_a_job_name_is_free_again_once_deleted(tmp_path):
    store = Store(tmp_path / "db")
    store.create_project("team-a", 1)
    spec = JobSpec(name="hpo1", project="team-a", command=["true"])
    store.insert_job("u1", spec, "me")
    with pytest.raises(sqlite3.IntegrityError):
        store.insert_job("u2", spec, "me")
    store.update_job("u1", status=JobStatus.DELETED)
    assert store.insert_job("u2", spec, "me").uid == "u2"


def test_a_quota_change_sets_only_the_quotas_given(tmp_path):
    store = Store(tmp_path / "podsweep.db")
    store.create_project("team-a", 2)
    assert store.project("team-a").cpus == 0         # the default: CPUs only borrowed
    store.set_quota("team-a", cpus=3)
    store.set_quota("team-a", gpus=1)
    project = store.project("team-a")
    assert (project.gpus, project.cpus) == (1, 3)


def test_a_big_jobs_detail_reads_its_running_pods_and_latest_ones_only(tmp_path):
    store = Store(tmp_path / "podsweep.db")
    store.create_project("team-a", 1)
    job = store.insert_job("u1", JobSpec(name="big", project="team-a", command=["true"],
                                         completions=1500), "me")
    with store.transaction():
        for index in range(1500):
            pod = store.insert_pod(job.uid, index, 0, f"big-{index}-0", (), "/tmp/x")
            if index != 3:           # index 3 still runs, started long before the rest
                store.update_pod(pod, status=PodStatus.SUCCEEDED, exit_code=0)
            store.event(job.uid, "Started", f"pod big-{index}-0")
    shown = store.pods(job.uid, 1000)
    assert [p.index for p in shown] == [3, *range(501, 1500)]
    assert len(store.pods(job.uid)) == 1500
    events = store.events(job.uid, 1000)
    assert [e.message for e in events] == [f"pod big-{i}-0" for i in range(500, 1500)]
    assert len(store.events(job.uid)) == 1 + 1500      # with its Submitted
    # the events are found by their job, not by a scan of every job's
    plan = store.db.execute("EXPLAIN QUERY PLAN SELECT id FROM events WHERE job_uid = ? "
                            "ORDER BY id DESC LIMIT 5", ("u1",)).fetchall()
    assert "events_job" in " ".join(str(tuple(row)) for row in plan), plan


def test_a_pods_share_of_a_gpu_is_stored_exactly_and_old_pods_hold_whole_gpus(tmp_path):
    """Schema 6 adds a pod's fraction: a v5 file's pods read back as whole-GPU pods, and a
    share of 1/3 comes back as 1/3, not a float's approximation of it."""
    path = tmp_path / "old.db"
    db = sqlite3.connect(path)
    db.executescript((GOLDENS / "schema-v5.sql").read_text())
    db.execute("PRAGMA user_version = 5")
    db.execute("INSERT INTO projects(name, gpus, created) VALUES ('team-a', 1, 0)")
    db.execute("INSERT INTO jobs(uid, seq, name, project, user, spec, status, created) VALUES "
               "('u1', 1, 'old', 'team-a', 'me', '{\"name\": \"old\", \"project\": "
               "\"team-a\", \"command\": [\"true\"], \"gpus\": 1}', 'Running', 0)")
    db.execute("INSERT INTO pods(job_uid, idx, attempt, name, status, gpus, seq, created, dir) "
               "VALUES ('u1', 0, 0, 'old-0-0', 'Running', '[0]', 1, 0, '/tmp/x')")
    db.execute("INSERT INTO meta(key, value) VALUES ('job_seq', '1'), ('pod_seq', '1')")
    db.commit()
    db.close()
    store = Store(path)
    assert store.active_pods()[0].fraction is None
    spec = JobSpec(name="third", project="team-a", command=["true"], gpus=Fraction(1, 3))
    job = store.insert_job("u2", spec, "me")
    store.insert_pod(job.uid, 0, 0, "third-0-0", (0,), "/tmp/y", Fraction(1, 3))
    again = Store(path)
    assert again.pod("u2", "third-0-0").fraction == Fraction(1, 3)
    assert again.job("u2").spec.gpus == Fraction(1, 3)
    assert again.job("u1").spec.gpus == 1
    assert again.db.execute("SELECT fraction FROM pods WHERE name = 'third-0-0'"
                            ).fetchone()[0] == "1/3"
