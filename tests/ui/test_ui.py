"""The web UI in a real browser: the walk-through's admin steps, jobs, logs, results, plots."""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

from playwright.sync_api import expect

from podsweep.hpo import Session

from ..holder import add_holders
from .conftest import UI, login, shot

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "hpo_digits.py"
TRAINER = Path(__file__).resolve().parents[1] / "pruned_trainer.py"


def test_login_refuses_a_wrong_password_and_sets_a_strict_cookie(page: Any, ui: UI):
    page.goto(ui.url + "/projects")
    expect(page).to_have_url(re.compile(r"/login\?next=/projects"))
    page.get_by_label("Username").fill("admin")
    page.get_by_label("Password").fill("not-the-password")
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("alert")).to_have_text("Wrong username or password.")
    page.get_by_label("Password").fill(ui.password)
    page.get_by_role("button", name="Log in").click()
    expect(page).to_have_url(re.compile(r"/projects$"))
    cookie = next(c for c in page.context.cookies() if c["name"] == "podsweep_session")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    page.get_by_role("button", name="Log out").click()
    expect(page).to_have_url(re.compile(r"/login$"))
    page.goto(ui.url + "/jobs")
    expect(page).to_have_url(re.compile(r"/login"))


def test_repeated_failures_lock_the_name_for_a_while(page: Any, ui: UI):
    for _ in range(5):
        response = page.request.post(ui.url + "/login", form={"username": "admin",
                                                              "password": "wrong"})
        assert response.status == 401
    # the sixth, right or wrong, is refused unheard (tests/security/test_logins.py has more)
    page.goto(ui.url + "/login")
    page.get_by_label("Username").fill("admin")
    page.get_by_label("Password").fill(ui.password)
    with page.expect_response(re.compile(r"/login$")) as answer:
        page.get_by_role("button", name="Log in").click()
    assert answer.value.status == 429 and int(answer.value.headers["retry-after"]) >= 1
    expect(page.get_by_role("alert")).to_have_text(
        re.compile(r"too many login attempts for user 'admin'; try again in \d+ s"))


def test_the_walkthrough_setup_add_team_a_with_2_gpus(page: Any, ui: UI):
    login(page, ui)
    page.get_by_role("link", name="Projects").click()
    page.get_by_label("Project name").fill("team-a")
    page.get_by_label("Allocated GPUs").fill("2")
    page.get_by_role("button", name="Add project").click()
    expect(page.get_by_role("status")).to_have_text("Project team-a created with 2 GPU(s).")
    row = page.get_by_role("row", name=re.compile("^team-a"))
    expect(row.get_by_role("cell").nth(1)).to_have_text("2")
    page.get_by_label("GPUs for team-a").fill("3")
    row.get_by_role("button", name="Set").click()
    expect(page.get_by_role("status")).to_have_text("Project team-a now deserves 3 GPU(s).")
    assert ui.plane.json("project", "list")[0]["deserved"] == 3
    ui.plane.run("user", "create", "alice")
    page.get_by_label("User for team-a").fill("alice")
    row.get_by_role("button", name="Add").click()
    expect(page.get_by_role("status")).to_have_text("alice is now a member of team-a.")
    expect(page.get_by_role("row", name=re.compile("^team-a"))).to_contain_text("alice")
    # bad input: one clear message, nothing changed
    page.get_by_label("Project name").fill("team-a")
    page.get_by_role("button", name="Add project").click()
    expect(page.get_by_role("alert")).to_contain_text("already exists")
    # a form without its CSRF token is refused
    response = page.request.post(ui.url + "/projects", form={"name": "team-x", "gpus": "1"})
    assert response.status == 403
    assert [p["name"] for p in ui.plane.json("project", "list")] == ["team-a"]


def test_submit_follow_logs_and_delete_a_job(page: Any, ui: UI, tmp_path: Path,
                                             screenshots: Path):
    ui.plane.run("project", "create", "team-a", "--gpus", "2")
    login(page, ui)

    def fill_the_form() -> None:
        page.get_by_label("Name", exact=True).fill("hello")
        page.get_by_label("Command").fill(
            "sh -c 'for i in 1 2 3 4 5 6; do echo line $i; sleep 0.5; done'")
        page.get_by_label("GPUs per pod (-g)").fill("1")
        page.get_by_label("Completions").fill("2")
        page.get_by_label("Parallelism").fill("2")      # both at once: half the wait
        page.get_by_label("Working directory").fill(str(tmp_path))

    fill_the_form()
    page.get_by_label("Image (-i; each pod runs in it)").fill("-busybox")
    page.get_by_role("button", name="Submit").click()
    expect(page.get_by_role("alert")).to_contain_text("not an image reference")
    fill_the_form()
    page.get_by_role("button", name="Submit").click()
    expect(page).to_have_url(re.compile(r"/jobs/team-a/hello"))
    expect(page.locator("#pods")).to_contain_text("hello-0-0")
    page.get_by_role("link", name="log of hello-0-0").click()
    expect(page.locator("#log")).to_contain_text("line 1")
    expect(page.locator("#log")).to_contain_text("line 6")          # it follows the pod
    page.get_by_role("link", name="Jobs").click()
    expect(page.get_by_role("row", name=re.compile("^hello"))).to_contain_text("Succeeded",
                                                                               timeout=30000)
    shot(page, screenshots, "jobs")
    page.on("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Delete job hello").click()
    expect(page.get_by_role("status")).to_have_text("Job hello deleted.")
    assert ui.plane.json("list", "-A") == []


def test_the_walkthrough_sweep_from_the_form_with_results_and_plots(
        page: Any, ui: UI, tmp_path: Path, screenshots: Path):
    nfs = tmp_path / "nfs"
    nfs.mkdir()
    ui.plane.run("project", "create", "team-a", "--gpus", "2")
    login(page, ui)
    shot(page, screenshots, "jobs-empty")
    page.get_by_label("Name", exact=True).fill("hpo1")
    page.get_by_label("Command").fill(f"{sys.executable} {EXAMPLE} --epochs 3 "
                                      f"--epoch-seconds 0.5")
    page.get_by_label("GPUs per pod (-g)").fill("1")
    page.get_by_label("Parallelism").fill("3")
    page.get_by_label("Completions").fill("4")
    page.get_by_label("Volumes").fill(f"{nfs}:/nfs/hpo")
    page.get_by_role("button", name="Submit").click()
    expect(page).to_have_url(re.compile(r"/jobs/team-a/hpo1"))
    # the pods table follows the job without a reload: running, then succeeded
    pods = page.locator("#pods")
    expect(pods).to_contain_text("Running")
    shot(page, screenshots, "job-running")
    expect(pods.get_by_text("Succeeded")).to_have_count(4, timeout=120000)
    page.get_by_role("link", name="log of hpo1-0-0").click()
    expect(page.locator("#log")).to_contain_text("Using configuration:")
    shot(page, screenshots, "pod-log")
    page.goto(ui.url + "/jobs/team-a/hpo1")
    uid = ui.plane.job("hpo1", "team-a")["job"]["uid"]
    results = page.get_by_role("region", name=f"Results: experiment hpo1-{uid}")
    best = results.locator("tr.best")
    expect(best).to_have_count(1)
    expect(best).to_contain_text("★ best")
    expect(results.locator(".best-trial")).to_contain_text("Best by accuracy (max): trial #")
    expect(results.locator(".trials tbody tr")).to_have_count(4)
    expect(results.locator(".curves-plot .main-svg").first).to_be_visible()
    expect(results.locator(".curves-plot .scatterlayer .trace")).to_have_count(4)
    expect(results.locator(".parcoords-plot .main-svg").first).to_be_visible()
    # one axis per hyperparameter and one for the metric, with their names (the lines
    # themselves are drawn on a WebGL canvas)
    expect(results.locator(".parcoords-plot")).to_contain_text("log10(lr)")
    expect(results.locator(".parcoords-plot")).to_contain_text("batch_size")
    expect(results.locator(".parcoords-plot canvas").first).to_be_attached()
    shot(page, screenshots, "job-results")
    results.get_by_label("Best is").select_option("min")
    results.get_by_role("button", name="Rank").click()
    expect(results.locator(".best-trial")).to_contain_text("Best by accuracy (min)")


def test_a_script_that_names_its_experiment_has_its_results_and_plots_on_the_job_page(
        page: Any, ui: UI, tmp_path: Path, screenshots: Path):
    nfs = tmp_path / "nfs"
    nfs.mkdir()
    # another job's sweep in the same shared directory: not this job's results
    theirs = Session(nfs, "their-sweep")
    theirs.pick({"lr": [0.1, 0.01]})
    theirs.report(0, {"loss": 0.3})
    theirs.end("finished")
    add_holders(theirs.path, "another-job", {1: ("other-0-0", 0)})
    ui.plane.run("project", "create", "team-a", "--gpus", "2")
    ui.plane.run("submit", "sweep", "-p", "team-a", "-g", "1", "--parallelism", "3",
                 "--completions", "3", "-v", f"{nfs}:/nfs/hpo", "--", sys.executable,
                 str(EXAMPLE), "--experiment", "my-sweep", "--epochs", "3",
                 "--epoch-seconds", "0.2")
    job = ui.plane.until("sweep done", lambda: (lambda j: j if j["job"]["status"] in (
        "Succeeded", "Failed") else None)(ui.plane.job("sweep", "team-a")), timeout=180,
        every=0.5)
    assert job["job"]["status"] == "Succeeded", job
    journal = nfs / "my-sweep" / "hpo.jsonl"
    # Until podsweep.hpo records who picked each trial, add it as the library will: the
    # job's uid and the pod whose log says it picked the trial.
    picked = {}
    for pod in job["pods"]:
        log = ui.plane.run("logs", "sweep", "-p", "team-a", "--pod", pod["name"]).stdout
        trial = re.search(r"Picked HPO experiment #(\d+)", log)
        assert trial, log
        picked[int(trial.group(1))] = (pod["name"], pod["index"])
    add_holders(journal, job["job"]["uid"], picked)

    get = ui.plane.run("get", "sweep", "-p", "team-a").stdout
    experiments = get.split("HPO EXPERIMENTS\n", 1)[1].splitlines()
    assert experiments[0].split() == ["JOURNAL", "TRIALS", "BEST"]
    assert experiments[1].startswith(f"{journal}   3/12 (3 finished)   #"), get
    assert "accuracy=" in experiments[1] and len(experiments) == 2, get
    hpo = ui.plane.json("get", "sweep", "-p", "team-a")["hpo"]
    assert [e["name"] for e in hpo["experiments"]] == ["my-sweep"]

    login(page, ui)
    page.goto(ui.url + "/jobs/team-a/sweep")
    results = page.get_by_role("region", name="Results: experiment my-sweep")
    expect(results).to_contain_text(str(journal))
    expect(results.locator(".trials tbody tr")).to_have_count(3)
    expect(results.locator("tr.best")).to_have_count(1)
    expect(results.locator(".curves-plot .scatterlayer .trace")).to_have_count(3)
    expect(results.locator(".parcoords-plot")).to_contain_text("batch_size")
    expect(page.get_by_role("region")).to_have_count(1)
    expect(page.locator("main")).not_to_contain_text("their-sweep")
    shot(page, screenshots, "job-named-experiment")


def test_a_sweep_with_pruned_trials_shows_them_apart_and_the_epochs_saved(
        page: Any, ui: UI, tmp_path: Path, screenshots: Path):
    nfs = tmp_path / "nfs"
    nfs.mkdir()
    ui.plane.run("project", "create", "team-a", "--gpus", "1")
    # one pod at a time, so the outcome is known (see pruned_trainer): trial 1 runs its 10
    # epochs, trials 2 to 4 are pruned after 2; a pruned pod exits 0
    ui.plane.run("submit", "prune", "-p", "team-a", "-g", "1", "--parallelism", "1",
                 "--completions", "4", "-v", f"{nfs}:/nfs/hpo", "--", sys.executable,
                 str(TRAINER), "/nfs/hpo")
    job = ui.plane.until("prune done", lambda: (lambda j: j if j["job"]["status"] in (
        "Succeeded", "Failed") else None)(ui.plane.job("prune", "team-a")), timeout=180)
    assert job["job"]["status"] == "Succeeded", job
    uid = job["job"]["uid"]

    login(page, ui)
    page.goto(ui.url + "/jobs/team-a/prune")
    results = page.get_by_role("region", name=f"Results: experiment prune-{uid}")
    expect(results.locator(".epochs-saved")).to_have_text(
        "Epochs: 16 used of 40 for a full run of every trial (60% saved by stopping "
        "unpromising trials early)")
    # ranked by the declared metric, though the trainer reports loss first
    expect(results.locator(".best-trial")).to_contain_text("Best by accuracy (max): trial #1")
    expect(results.locator("tr.best")).to_contain_text("★ best")
    pruned = results.locator("tr.pruned")
    expect(pruned).to_have_count(3)
    expect(pruned.locator(".status-pruned")).to_have_count(3)
    expect(pruned.first).to_contain_text("pruned at epoch 1")
    expect(results.locator(".curves-plot .scatterlayer .trace")).to_have_count(4)
    expect(results.locator(".parcoords-plot canvas").first).to_be_attached()
    shot(page, screenshots, "job-pruned")
    # what the plots were given: pruned curves dashed and faded, the best one thick and
    # starred, pruned trials at the grey end of the parallel coordinates' colour scale
    curves = page.evaluate("""() => document.querySelector('.curves-plot').data.map(d =>
        ({trial: d.meta.trial, dash: d.line.dash, width: d.line.width, opacity: d.opacity,
          name: d.name}))""")
    by_trial = {c["trial"]: c for c in curves}
    assert sorted(by_trial) == [1, 2, 3, 4]
    assert by_trial[1]["dash"] == "solid" and by_trial[1]["width"] > by_trial[2]["width"]
    assert by_trial[1]["name"].startswith("★ best #1")
    assert all(by_trial[t]["dash"] == "dash" and by_trial[t]["opacity"] < 1 and
               " pruned " in by_trial[t]["name"] for t in (2, 3, 4))
    # (_fullData: the scale Plotly drew with, after its checks; a scale it refused would be
    # replaced by its default there)
    line = page.evaluate("() => document.querySelector('.parcoords-plot')._fullData[0].line")
    assert line["color"][1:] == [0, 0, 0] and line["color"][0] >= 0.1   # trial order: 1..4
    assert line["autocolorscale"] is False
    assert line["colorscale"][0] == [0, "#a0a6b0"] and line["colorscale"][1][1] == "#a0a6b0"
    data = page.request.get(ui.url + "/jobs/team-a/prune/results.json").json()
    assert (data["metric"], data["mode"], data["best"]) == ("accuracy", "max", 1)
    assert data["saved"] == {"used": 16, "full": 40, "percent": 60,
                             "text": "epochs: 16 used of 40 for a full run of every trial "
                                     "(60% saved)"}
    assert [(t["status"], t["epochs"]) for t in data["trials"]] == [
        ("finished", 10), ("pruned", 2), ("pruned", 2), ("pruned", 2)]


def test_unreadable_results_are_one_note_each_and_the_page_still_works(
        page: Any, ui: UI, tmp_path: Path, screenshots: Path):
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    ui.plane.run("project", "create", "team-a", "--gpus", "1")
    ui.plane.run("submit", "broken", "-p", "team-a", "-v", f"{a}:/a", "-v", f"{b}:/b",
                 "--", "true")
    uid = ui.plane.until("broken done", lambda: (lambda j: j["job"]["uid"] if j["job"][
        "status"] == "Succeeded" else None)(ui.plane.job("broken", "team-a")))
    (a / f"broken-{uid}").mkdir()
    (a / f"broken-{uid}" / "hpo.jsonl").write_text("not a journal\n")
    b.rmdir()
    b.symlink_to(b)                          # unreadable, even by root
    login(page, ui)
    page.goto(ui.url + "/jobs/team-a/broken")
    notes = page.get_by_role("note")
    expect(notes).to_have_count(2)
    expect(notes.nth(0)).to_have_text(f"Cannot look for HPO results in {b}: Too many "
                                      f"levels of symbolic links")
    expect(notes.nth(1)).to_have_text(f"Cannot read the results in {a}/broken-{uid}/"
                                      f"hpo.jsonl: it is not an HPO journal (no experiment "
                                      f"declaration)")
    expect(page.locator("#pods")).to_contain_text("broken-0-0")
    shot(page, screenshots, "job-bad-results")
    assert page.request.get(ui.url + "/jobs/team-a/broken/results.json").status == 404
    get = ui.plane.run("get", "broken", "-p", "team-a").stdout
    assert get.endswith(f"Cannot look for HPO results in {b}: Too many levels of symbolic "
                        f"links\n"), get


def test_a_member_of_another_project_can_neither_see_nor_delete_the_job(
        page: Any, ui: UI, screenshots: Path):
    ui.plane.run("project", "create", "team-a", "--gpus", "1")
    ui.plane.run("project", "create", "team-b", "--gpus", "1")
    out = ui.plane.run("user", "create", "alice", "-p", "team-a").stdout
    password = re.search(r"web UI password: (\S+)", out).group(1)
    token = re.search(r"CLI token: (\S+)", out).group(1)
    ui.plane.run("submit", "secret", "-p", "team-b", "--", "sleep", "30")
    login(page, ui, "alice", password)
    expect(page.locator("#jobs")).not_to_contain_text("secret")
    page.get_by_role("link", name="Projects").click()
    expect(page.locator("table")).to_contain_text("team-a")
    expect(page.locator("table")).not_to_contain_text("team-b")
    expect(page.get_by_role("button", name="Add project")).to_have_count(0)
    shot(page, screenshots, "projects-member")
    page.goto(ui.url + "/jobs/team-b/secret")
    expect(page.get_by_role("alert")).to_contain_text("not a member of project 'team-b'")
    page.goto(ui.url + "/jobs")
    csrf = page.locator("input[name=csrf]").first.get_attribute("value")
    for url, form in (("/projects", {"csrf": csrf, "name": "x", "gpus": "1"}),
                      ("/jobs/team-b/secret/delete", {"csrf": csrf})):
        assert page.request.post(ui.url + url, form=form).status == 403
    refused = ui.plane.run("delete", "secret", "-p", "team-b", token=token, check=False)
    assert refused.returncode == 4
    assert [j["name"] for j in ui.plane.json("list", "-A")] == ["secret"]


def test_the_admin_changes_the_first_password(page: Any, ui: UI, screenshots: Path):
    login(page, ui)
    page.get_by_role("link", name="Account").click()
    shot(page, screenshots, "account")
    page.get_by_label("Current password").fill(ui.password)
    page.get_by_label("New password (8 characters or more)").fill("a-better-one")
    page.get_by_label("New password again").fill("a-better-one")
    page.get_by_role("button", name="Change the password").click()
    expect(page).to_have_url(re.compile(r"/login"))
    page.goto(ui.url + "/jobs")           # every session of the user ended
    expect(page).to_have_url(re.compile(r"/login"))
    login(page, ui, "admin", "a-better-one")


def test_cluster_page_shows_who_holds_each_gpu(page: Any, ui: UI, screenshots: Path):
    ui.plane.run("project", "create", "team-a", "--gpus", "1")
    ui.plane.run("submit", "hold", "-p", "team-a", "-g", "1", "--parallelism", "2",
                 "--completions", "2", "--", "sleep", "30")
    ui.plane.until("2 running", lambda: ui.plane.job("hold", "team-a")["job"]["running"] == 2)
    login(page, ui)
    page.get_by_role("link", name="Cluster").click()
    expect(page.get_by_role("row", name=re.compile(r"^0 virtual hold-"))).to_have_count(1)
    expect(page.locator("#use")).to_contain_text("over quota")
    expect(page.locator("#chart .main-svg").first).to_be_visible()
    shot(page, screenshots, "cluster")
    page.get_by_role("link", name="Projects").click()
    shot(page, screenshots, "projects-admin")
    page.set_viewport_size({"width": 400, "height": 800})
    page.goto(ui.url + "/jobs")
    shot(page, screenshots, "jobs-narrow")
    overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 0, "the page must not scroll sideways on a narrow window"
