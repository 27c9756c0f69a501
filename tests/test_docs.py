"""The README and docs/ pages: every relative link resolves (file and heading), every page is
reachable from the README, and the README stays a front page rather than a lab notebook."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")),
         ROOT / "charts/hurricane/README.md", ROOT / "images/README.md"]
LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)\)")


def prose(text: str) -> str:
    """The text outside fenced code blocks (links in code are not links)."""
    return re.sub(r"^```.*?^```", "", text, flags=re.S | re.M)


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(page: Path) -> set[str]:
    return {slug(m.group(1)) for m in re.finditer(r"^#+\s+(.*)$", prose(page.read_text()), re.M)}


def links(page: Path) -> list[str]:
    """Markdown link and image targets, and the ``src`` of HTML images."""
    text = prose(page.read_text())
    return (LINK.findall(text) + re.findall(r"!\[[^\]]*\]\(([^)\s]+)\)", text)
            + re.findall(r'<img [^>]*src="([^"]+)"', text))


def test_the_slug_matches_githubs_rule() -> None:
    assert slug("Does the supernet rank? The quality verdict") == \
        "does-the-supernet-rank-the-quality-verdict"
    assert slug("`hurricane run` and Kueue/Trainer") == "hurricane-run-and-kueuetrainer"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_resolves_to_a_file_and_heading(page: Path) -> None:
    broken = []
    found = links(page)
    for target in found:
        if re.match(r"[a-z]+:", target):  # http(s), mailto: not checked offline
            continue
        path, _, anchor = target.partition("#")
        dest = (page.parent / path).resolve() if path else page
        if not dest.exists():
            broken.append(f"{target}: no such file")
        elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
            broken.append(f"{target}: no heading #{anchor} in {dest.relative_to(ROOT)}")
    assert not broken, f"{page.relative_to(ROOT)}: {broken}"
    if page.parent.name == "docs":
        assert "../README.md" in found, f"{page.name} does not link back to the README"


def test_every_docs_page_is_linked_from_the_readme() -> None:
    linked = {(ROOT / t.partition("#")[0]).resolve() for t in links(ROOT / "README.md")}
    orphans = [p.name for p in sorted((ROOT / "docs").glob("*.md")) if p.resolve() not in linked]
    assert not orphans, f"docs pages the README does not link: {orphans}"


def test_the_readme_opens_with_the_two_commands_and_stays_short() -> None:
    text = (ROOT / "README.md").read_text()
    first_block = re.search(r"```bash\n(.*?)```", text, re.S)
    assert first_block is not None
    commands = [line.split("#")[0].strip() for line in first_block.group(1).splitlines()]
    assert commands == ["make demo", "make test"]
    assert "make test" in (ROOT / ".ci/run").read_text()
    assert len(text.splitlines()) <= 300, "README.md over 300 lines: move detail to docs/"
