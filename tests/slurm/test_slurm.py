"""podsweep on the real Slurm, through the real CLI: projects as accounts and QOS, jobs as
arrays, pods as tasks, their logs, retries, delete, and bad input refused."""

from __future__ import annotations

import json
from pathlib import Path

from .conftest import SlurmPlane, gpu_tres, run


def qos_row(name: str) -> dict[str, str]:
    out = run("sacctmgr", "-n", "-P", "show", "qos", "where", f"name={name}",
              "format=name,grptres,preempt,priority")
    fields = out.strip().split("|")
    return dict(zip(["name", "grptres", "preempt", "priority"], fields))


def test_projects_become_accounts_with_a_qos_that_holds_the_quota(plane: SlurmPlane):
    p = plane.prefix
    plane.run("project", "create", "team-a", "--gpus", "2")
    # Slurm's accounting is set up in the background (sacctmgr takes 0.3-0.7 s a change)
    plane.until("the association", lambda: [line for line in run(
        "sacctmgr", "-n", "-P", "show", "assoc", "where", f"account={p}team-a",
        "format=account,user,qos,defaultqos").split()
        if line.split("|")[1] and line.split("|")[3] == f"ps-{p}team-a"])
    row = qos_row(f"ps-{p}team-a")
    assert row["grptres"] == gpu_tres(2) and row["preempt"] == f"ps_{p}borrow"
    borrow = run("sacctmgr", "-n", "-P", "show", "qos", "where", f"name=ps_{p}borrow",
                 "format=preemptmode").strip()
    assert borrow == "requeue"

    plane.run("project", "quota", "team-a", "--gpus", "3")
    plane.until("the new limit", lambda: qos_row(f"ps-{p}team-a")["grptres"] == gpu_tres(3))
    assert {x["name"]: x["deserved"] for x in plane.json("project", "list")} == {"team-a": 3}

    again = plane.run("project", "create", "team-a", "--gpus", "1", check=False)
    assert again.returncode == 2 and "already exists" in again.stderr
    bad = plane.run("project", "create", "Team_A", "--gpus", "1", check=False)
    assert bad.returncode == 2 and "invalid project name" in bad.stderr
    assert qos_row(f"ps-{p}team-a")["grptres"] == gpu_tres(3)


def test_bad_input_is_refused_and_nothing_is_stored(plane: SlurmPlane, tmp_path: Path):
    plane.run("project", "create", "team-a", "--gpus", "2")
    plane.run("submit", "ok", "-p", "team-a", "--", "true")
    cases = [
        (["-g", "5"], 2, "no Slurm node has more than 4 GPU(s)"),
        (["-p", "nope"], 3, "project 'nope' not found"),
        (["-v", f"{tmp_path}/missing:/data"], 2, "does not exist"),
        (["-i", "python:3.11"], 2, "drop -i"),
        (["--working-dir", "/no/such/dir"], 2, "does not exist"),
        (["--completions", "10002"], 2, "arrays of at most 10001 tasks (MaxArraySize)"),
        (["--cpu", "64"], 2, "no Slurm node has more than 16 CPUs"),
    ]
    for args, code, message in cases:
        proc = plane.run("submit", "bad", *(args if "-p" in args else ["-p", "team-a", *args]),
                         "--", "true", check=False)
        assert proc.returncode == code and message in proc.stderr, (args, proc.stderr)
        assert len(proc.stderr.strip().splitlines()) == 1
    taken = plane.run("submit", "ok", "-p", "team-a", "--", "true", check=False)
    assert taken.returncode == 2 and "already exists" in taken.stderr
    assert [j["name"] for j in plane.json("list", "-A")] == ["ok"]
    # what only Slurm can refuse (here: an admin removed the project's account behind
    # podsweep's back): the job is taken, then fails with Slurm's own words
    plane.run("project", "create", "team-b", "--gpus", "1")
    account_b = f"{plane.prefix}team-b"
    plane.until("team-b in Slurm", lambda: run("sacctmgr", "-n", "-P", "show", "assoc",
                                               "where", f"account={account_b}",
                                               "format=user").split())
    run("sacctmgr", "-i", "delete", "user", "where", f"account={account_b}")
    run("sacctmgr", "-i", "delete", "account", account_b)
    plane.run("submit", "orphan", "-p", "team-b", "--", "true")
    orphan = plane.until("orphan refused", lambda: (lambda j: j if j["job"]["status"] ==
                         "Failed" else None)(plane.job("orphan", "team-b")))
    assert orphan["job"]["message"].startswith("Slurm refused the job: sbatch"), orphan
    assert "Invalid account" in orphan["job"]["message"] and orphan["pods"] == []
    plane.run("delete", "orphan", "-p", "team-b")
    # Slurm got one array, from the good submit
    account = f"{plane.prefix}team-a"
    arrays = run("sacct", "-X", "-n", "-P", "-A", account, "--format=JobName").split()
    assert {a.split(".")[0] for a in arrays} <= {"ok"}     # Slurm's name: <job>.<uid>


def test_a_job_runs_as_an_array_with_distinct_gpus_logs_and_delete(plane: SlurmPlane):
    plane.run("project", "create", "team-a", "--gpus", "3")
    plane.run("submit", "sweep", "-p", "team-a", "-g", "1", "--parallelism", "3",
              "--completions", "5", "-e", "GREETING=hello world", "--",
              "sh", "-c", 'echo "$GREETING from $PODSWEEP_POD_NAME index $PODSWEEP_POD_INDEX '
                          'gpu $CUDA_VISIBLE_DEVICES"; '
                          # the control plane's own variables stay with it (sbatch --export=NIL)
                          'echo "home ${PODSWEEP_HOME:-hidden} path ${PATH:+set}"; sleep 600')
    job = plane.until("3 tasks running", lambda: (lambda j: j if j["job"]["running"] == 3
                                                  else None)(plane.job("sweep", "team-a")))
    assert job["job"]["status"] == "Running" and job["job"]["allocated"] == 3
    array = plane.array("sweep", "team-a")
    tasks = [t for t in plane.squeue(array) if t["job_state"] == "RUNNING"]
    assert len(tasks) == 3 and {t["account"] for t in tasks} == {f"{plane.prefix}team-a"}
    assert {t["array_task_id"] for t in tasks} == {0, 1, 2}

    pods = {p["name"]: p for p in job["pods"]}
    assert set(pods) == {"sweep-0-0", "sweep-1-0", "sweep-2-0"}
    logs = {n: plane.until(f"{n}'s log", lambda n=n: (lambda out: out if "path" in out else None)(
        plane.run("logs", "sweep", "-p", "team-a", "--pod", n).stdout)) for n in pods}
    gpus = []
    for name, text in logs.items():
        index = name.split("-")[1]
        assert text.startswith(f"hello world from {name} index {index} gpu "), text
        assert text.splitlines()[1] == "home hidden path set", text
        gpus.append(text.splitlines()[0].split()[-1])
        assert [int(g) for g in gpus[-1].split(",")] == pods[name]["gpus"]
    assert len(set(gpus)) == 3, gpus           # each running task has a GPU of its own
    info = plane.json("status")
    assert sorted(g["pod"] for g in info["gpus"] if g["pod"]) == sorted(pods)

    missing = plane.run("logs", "sweep", "-p", "team-a", "--pod", "../../etc/passwd",
                        check=False)
    assert missing.returncode == 3 and "is not a pod of job" in missing.stderr

    plane.run("delete", "sweep", "-p", "team-a")
    # delete returns once no task runs
    live = [t for t in plane.squeue(array) if t["job_state"] in ("RUNNING", "COMPLETING",
                                                                 "PENDING")]
    assert live == []
    assert plane.json("list", "-A") == []


def test_volumes_through_the_sandbox_and_a_failed_task_runs_again(plane: SlurmPlane,
                                                                   tmp_path: Path):
    plane.run("project", "create", "team-a", "--gpus", "1")
    data = tmp_path / "data"
    data.mkdir()
    (data / "in.txt").write_text("from the host\n")
    # the first attempt fails, the retry (attempt 1) succeeds
    plane.run("submit", "vol", "-p", "team-a", "--backoff-limit", "2", "-v",
              f"{data}:/nfs/data", "--working-dir", "/nfs/data", "--", "sh", "-c",
              'cat in.txt; echo "attempt $PODSWEEP_POD_ATTEMPT" >> out.txt; '
              'test "$PODSWEEP_POD_ATTEMPT" = 1')
    job = plane.until("vol done", lambda: (lambda j: j if j["job"]["status"] in (
        "Succeeded", "Failed") else None)(plane.job("vol", "team-a")), timeout=90)
    assert job["job"]["status"] == "Succeeded", job
    assert job["job"]["failed"] == 1 and job["job"]["succeeded"] == 1
    assert [(p["name"], p["status"], p["exit_code"]) for p in job["pods"]] == [
        ("vol-0-0", "Failed", 1), ("vol-0-1", "Succeeded", 0)]
    assert (data / "out.txt").read_text() == "attempt 0\nattempt 1\n"
    log = plane.run("logs", "vol", "-p", "team-a", "--pod", "vol-0-1").stdout
    assert log == "from the host\n"
    assert not Path("/nfs/data").exists()       # the mount lived in the task's sandbox only

    # a task that always fails ends the job once the backoff limit is spent
    plane.run("submit", "bad", "-p", "team-a", "--backoff-limit", "0", "--", "sh", "-c",
              "exit 3")
    job = plane.until("bad failed", lambda: (lambda j: j if j["job"]["status"] == "Failed"
                                             else None)(plane.job("bad", "team-a")))
    assert [(p["name"], p["status"], p["exit_code"]) for p in job["pods"]] == [
        ("bad-0-0", "Failed", 3)]
    assert "backoff limit 0" in job["job"]["message"]
    assert json.loads(plane.run("get", "bad", "-p", "team-a", "-o", "json").stdout)[
        "job"]["failed"] == 1


def test_tasks_go_on_without_the_control_plane_and_are_accounted_after(plane: SlurmPlane):
    plane.run("project", "create", "team-a", "--gpus", "2")
    plane.run("submit", "calm", "-p", "team-a", "--parallelism", "2", "--completions", "4",
              "--", "sleep", "2")
    plane.until("2 running", lambda: plane.job("calm", "team-a")["job"]["running"] == 2)
    array = plane.array("calm", "team-a")
    plane.run("down")
    # Slurm runs the whole array while podsweep is away
    plane.until("the array done in Slurm", lambda: plane.squeue(array) and all(
        t["job_state"] == "COMPLETED" for t in plane.squeue(array)), timeout=90)
    plane.run("up")
    job = plane.until("calm accounted", lambda: (lambda j: j if j["job"]["status"] ==
                      "Succeeded" else None)(plane.job("calm", "team-a")))
    assert job["job"]["succeeded"] == 4 and job["job"]["failed"] == 0
    assert sorted(p["name"] for p in job["pods"]) == [f"calm-{i}-0" for i in range(4)]
    assert {p["status"] for p in job["pods"]} == {"Succeeded"}


def test_an_array_slurm_has_forgotten_is_read_from_accounting(plane: SlurmPlane,
                                                              tmp_path: Path):
    """What the poller falls back on when squeue no longer lists an array (the control
    plane was down longer than Slurm's MinJobAge): sacct's records of it."""
    import asyncio

    from podsweep.cluster.slurm import SlurmCluster
    from podsweep.store import Store

    plane.run("project", "create", "team-a", "--gpus", "1")
    plane.until("the account", lambda: run("sacctmgr", "-n", "-P", "show", "assoc", "where",
                                           f"account={plane.prefix}team-a", "format=user").split())
    array = run("sbatch", "--parsable", "--array=0-1", f"--account={plane.prefix}team-a",
                f"--qos=ps-{plane.prefix}team-a", f"--output={tmp_path}/%A_%a.out",
                "--wrap", "exit $SLURM_ARRAY_TASK_ID").strip()

    async def read() -> list:
        cluster = SlurmCluster(tmp_path / "home", Store(tmp_path / "db"),
                               asyncio.get_running_loop(), plane.prefix)
        return await cluster._from_sacct(array)

    def ended():
        tasks = asyncio.run(read())
        return tasks if len(tasks) == 2 and all(t.state != "RUNNING" for t in tasks) \
            and all(t.state != "PENDING" for t in tasks) else None
    tasks = sorted(plane.until("both tasks in accounting", ended), key=lambda t: t.index)
    assert [(t.index, t.restarts, t.state, t.exit_code) for t in tasks] == [
        (0, 0, "COMPLETED", 0), (1, 0, "FAILED", 1)]
