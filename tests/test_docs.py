"""The README and docs/ as a reader follows them: every relative link resolves (the file,
and the heading an anchor names), and the README links nowhere outside the repository."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def anchors(page: Path) -> set[str]:
    """GitHub's anchors for a page's headings: lower case, punctuation dropped, spaces to -."""
    out = set()
    for line in page.read_text().splitlines():
        if line.startswith("#"):
            title = line.lstrip("#").strip().lower()
            out.add(re.sub(r"[^\w\- ]", "", title).replace(" ", "-"))
    return out


def links(page: Path) -> list[str]:
    text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)   # code is not a link
    return LINK.findall(text)


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(REPO)))
def test_every_relative_link_resolves(page: Path) -> None:
    for target in links(page):
        if re.match(r"[a-z]+:", target):
            continue
        path, _, anchor = target.partition("#")
        dest = (page.parent / path).resolve() if path else page
        assert dest.exists(), f"{page.name}: {target} does not exist"
        assert dest.is_relative_to(REPO), f"{page.name}: {target} leaves the repository"
        if anchor:
            assert anchor in anchors(dest), f"{page.name}: no heading for #{anchor} in {dest.name}"


def test_the_readme_links_nowhere_outside_the_repository() -> None:
    outside = [t for t in links(REPO / "README.md") if re.match(r"[a-z]+:", t)]
    assert outside == []
    assert "../shared" not in (REPO / "README.md").read_text()


def test_the_docs_cover_what_the_readme_promises() -> None:
    assert len((REPO / "README.md").read_text().splitlines()) <= 250
    for name in ("walkthrough", "hpo", "local", "slurm", "kubernetes", "security",
                 "benchmarks", "design"):
        assert f"(docs/{name}.md)" in (REPO / "README.md").read_text(), name
