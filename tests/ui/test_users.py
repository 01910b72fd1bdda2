"""The Users page in a real browser: an admin takes access away (issue 10, item 8)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import httpx
from playwright.sync_api import expect

from .conftest import UI, login, shot


def created(ui: UI, name: str, *projects: str) -> tuple[str, str]:
    out = ui.plane.run("user", "create", name, *[a for p in projects for a in ("-p", p)]).stdout
    token = re.search(r"CLI token: (\S+)", out)
    password = re.search(r"web UI password: (\S+)", out)
    assert token and password, out
    return token.group(1), password.group(1)


def whoami(ui: UI, token: str) -> int:
    return httpx.get(ui.url + "/api/v1/whoami", headers={"Authorization": f"Bearer {token}"},
                     timeout=30).status_code


def test_the_admin_removes_rotates_revokes_and_deletes_on_the_users_page(
        page: Any, ui: UI, screenshots: Path):
    ui.plane.run("project", "create", "team-a", "--gpus", "1")
    ui.plane.run("project", "create", "team-b", "--gpus", "1")
    alice, alice_password = created(ui, "alice", "team-a", "team-b")
    bob, _ = created(ui, "bob", "team-a")
    ui.plane.run("submit", "a1", "-p", "team-a", "--", "true", token=alice)

    # a member does not get the page, nor its forms
    login(page, ui, "alice", alice_password)
    expect(page.get_by_role("link", name="Users")).to_have_count(0)
    page.goto(ui.url + "/users")
    expect(page.get_by_role("alert")).to_contain_text("user 'alice' is not an admin")
    page.goto(ui.url + "/jobs")
    csrf = page.locator("input[name=csrf]").first.get_attribute("value")
    assert page.request.post(ui.url + "/users/bob/delete", form={"csrf": csrf}).status == 403
    page.context.clear_cookies()

    login(page, ui)
    page.get_by_role("link", name="Users").click()
    expect(page.locator("#users")).to_contain_text("alice")
    shot(page, screenshots, "users")
    # without the CSRF token a form is refused
    assert page.request.post(ui.url + "/users/bob/delete", form={}).status == 403

    page.get_by_role("button", name="Remove alice from team-b").click()
    expect(page.get_by_role("status")).to_have_text("alice is no longer a member of team-b.")
    assert [p["name"] for p in ui.plane.json("project", "list", token=alice)] == ["team-a"]

    page.get_by_role("button", name="Rotate the token of bob").click()
    expect(page.get_by_role("status")).to_contain_text("New token for bob")
    new = page.locator("#new-token").inner_text()
    assert new != bob and whoami(ui, bob) == 401 and whoami(ui, new) == 200
    assert new not in page.url
    shot(page, screenshots, "users-rotated")

    page.get_by_role("button", name="Revoke the token of bob").click()
    expect(page.get_by_role("status")).to_have_text("Revoked 1 token(s) of bob.")
    assert whoami(ui, new) == 401

    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Delete alice").click()
    expect(page.get_by_role("status")).to_have_text("User alice deleted; their jobs stay.")
    expect(page.locator("#users")).not_to_contain_text("alice")
    assert whoami(ui, alice) == 401
    assert [(j["name"], j["user"]) for j in ui.plane.json("list", "-A")] == [("a1", "alice")]

    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Delete admin").click()
    expect(page.get_by_role("alert")).to_contain_text("the last admin")
    expect(page.locator("#users")).to_contain_text("admin")
