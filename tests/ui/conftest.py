"""Browser tests: Playwright drives Debian's Chromium against a real control plane.

No browser is downloaded: Playwright's driver ships in its wheel, and the browser is
/usr/bin/chromium (``apt-get install chromium``; ``.ci/run`` installs it). Without it the
tests are skipped here and say why; CI always has it.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ..control.conftest import ControlPlane

CHROMIUM = os.environ.get("PODSWEEP_CHROMIUM", "/usr/bin/chromium")
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]


# One browser for the package, closed when its last test is done: Playwright's sync API
# runs an event loop on the main thread while it is open, and a test after it that calls
# asyncio.run() would fail ("cannot be called from a running event loop").
@pytest.fixture(scope="package")
def browser() -> Iterator[Any]:
    if not shutil.which(CHROMIUM) and not Path(CHROMIUM).exists():
        pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        yield b
        b.close()


class UI:
    """A control plane with its web UI, and the admin's first password."""

    def __init__(self, plane: ControlPlane, password: str) -> None:
        self.plane = plane
        self.password = password
        self.url = plane.json("status")["url"]


@pytest.fixture
def ui(tmp_path: Path) -> Iterator[UI]:
    plane = ControlPlane(tmp_path / "home")
    out = plane.run("up", "--gpus", "4", "--cpus", "16").stdout
    password = re.search(r"with the password (\S+)", out)
    assert password, out
    yield UI(plane, password.group(1))
    plane.stop()


@pytest.fixture(scope="session")
def screenshots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the tests leave a screenshot of each page they visit (the run's artifacts)."""
    return tmp_path_factory.mktemp("screenshots", numbered=False)


@pytest.fixture
def page(browser: Any, ui: UI) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1280, "height": 720})
    pg = context.new_page()
    pg.set_default_timeout(15000)
    yield pg
    context.close()


def shot(page: Any, screenshots: Path, name: str) -> None:
    page.screenshot(path=str(screenshots / f"{name}.png"), full_page=True)


def login(page: Any, ui: UI, user: str = "admin", password: str | None = None) -> None:
    page.goto(ui.url + "/jobs")
    page.get_by_label("Username").fill(user)
    page.get_by_label("Password").fill(password or ui.password)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(re.compile(r".*/jobs$"))
