"""Every link between the README, docs/ and bench/ must land: the target file exists and
its #anchor is one of the target's headings, as GitHub makes anchors. The README sends
users to docs/ for everything it no longer says, so a renamed heading or a moved file
would otherwise leave a dead end that nobody sees until a user clicks it."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PAGES = sorted([REPO / "README.md", *(REPO / "docs").glob("*.md"), *(REPO / "bench").glob("*.md")])

FENCE = re.compile(r"^[ \t]*(```|~~~).*?^[ \t]*\1[ \t]*$", flags=re.S | re.M)
INLINE_CODE = re.compile(r"(`+)(?!`).+?(?<!`)\1(?!`)", flags=re.S)
LINK = re.compile(r"(?<!!)\[([^\[\]]*)\]\(([^()\s]+)(?:\s+\"[^\"]*\")?\)")
HEADING = re.compile(r"^#{1,6}[ \t]+(.+?)[ \t]*#*[ \t]*$", flags=re.M)


def prose(text: str) -> str:
    """The text without code blocks (their `#` lines are not headings, their brackets not
    links)."""
    return FENCE.sub("", text)


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: the text a reader sees, lowercased, punctuation
    removed (letters, digits, `_`, `-` and spaces kept), spaces made hyphens."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading.strip())
    text = re.sub(r"<[^>]+>", "", text).lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(page: Path) -> set[str]:
    """Every anchor of a page: repeated headings get -1, -2, ... as on GitHub."""
    seen: Counter[str] = Counter()
    found = set()
    for heading in HEADING.findall(prose(page.read_text())):
        base = slug(heading)
        found.add(base if not seen[base] else f"{base}-{seen[base]}")
        seen[base] += 1
    return found


def links(page: Path) -> list[str]:
    """The relative link targets of a page (web addresses are not ours to check)."""
    text = INLINE_CODE.sub("code", prose(page.read_text()))
    return [t for _, t in LINK.findall(text) if not re.match(r"[a-z][a-z0-9+.-]*:", t)]


def broken(page: Path, target: str) -> str | None:
    """Why ``target`` (a link on ``page``) does not land, or None when it does."""
    path, _, anchor = target.partition("#")
    dest = (page.parent / path).resolve() if path else page
    if not dest.exists():
        return f"{dest.relative_to(REPO) if dest.is_relative_to(REPO) else dest} does not exist"
    if anchor and dest.suffix == ".md" and anchor not in anchors(dest):
        return f"{dest.relative_to(REPO)} has no heading with the anchor #{anchor}"
    return None


CASES = [(page, target) for page in PAGES for target in links(page)]


def test_the_pages_link_to_each_other() -> None:
    """The README links into docs/, and each page of docs/ is linked from the README."""
    readme = {(REPO / t.partition("#")[0]).resolve() for t in links(REPO / "README.md")}
    docs = set((REPO / "docs").glob("*.md"))
    assert len(docs) >= 6
    assert docs <= readme, f"not linked from the README: {sorted(p.name for p in docs - readme)}"
    assert len(CASES) >= 60


@pytest.mark.parametrize(
    ("page", "target"), CASES, ids=[f"{p.relative_to(REPO)}->{t}" for p, t in CASES]
)
def test_every_link_lands(page: Path, target: str) -> None:
    assert broken(page, target) is None, f"{page.relative_to(REPO)}: ({target}): " + str(
        broken(page, target)
    )


@pytest.mark.parametrize(
    ("heading", "anchor"),
    [
        ("Files in `.warpdrive/`", "files-in-warpdrive"),
        ('What "cold" means, for each', "what-cold-means-for-each"),
        (
            "A full disk is named, and leaves nothing broken",
            "a-full-disk-is-named-and-leaves-nothing-broken",
        ),
        ("Django's collectstatic and static files", "djangos-collectstatic-and-static-files"),
        (
            "CI on a fresh runner: the wheelhouse image and `--cache-from` (2026-12-01)",
            "ci-on-a-fresh-runner-the-wheelhouse-image-and---cache-from-2026-12-01",
        ),
        (
            "The bounded cache (tests/integration/test_cache_bound.py)",
            "the-bounded-cache-testsintegrationtest_cache_boundpy",
        ),
        ("`nox -s run`", "nox--s-run"),
    ],
)
def test_anchors_follow_githubs_rules(heading: str, anchor: str) -> None:
    assert slug(heading) == anchor


def test_a_dead_link_is_caught(tmp_path: Path) -> None:
    page = REPO / "docs" / "guarantees.md"
    assert broken(page, "../README.md#configuration") is None
    assert "no heading with the anchor #no-such-part" in str(
        broken(page, "../README.md#no-such-part")
    )
    assert "does not exist" in str(broken(page, "gone.md"))
    assert broken(page, "#a-cancelled-build-leaves-nothing") is None
    text = "# T\n\n```\n# not a heading\n[not](a-link.md)\n```\n\nsee [`x`](y.md#z)\n"
    (tmp_path / "p.md").write_text(text)
    assert anchors(tmp_path / "p.md") == {"t"} and links(tmp_path / "p.md") == ["y.md#z"]
