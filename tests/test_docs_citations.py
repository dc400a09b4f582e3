"""Every ``docs/<page>.md`` a docstring or comment cites exists, and so does the section it names.

Citations are written ``docs/reward_math.md, "Labels"`` (or ``(docs/vtg.md)`` for a whole page);
this test keeps them from pointing at a renamed page or heading, or outside the repository.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CITING_FOLDERS = ("vlmrm", "benchmarks", "tests", "scripts")
CITATION = re.compile(r"docs/([\w-]+\.md)`*\)?(?:,\s*\"([^\"]+)\")?")
"""``docs/<page>.md`` then, optionally, ``, "<section heading>"``."""
HEADING = re.compile(r"^#+\s+(.+?)\s*$", re.MULTILINE)
OUTSIDE_REFERENCES = re.compile(r"\.\./shared|reference/[\w-]+\.md|(?<!docs/)\breward_math\.md")
"""Pointers to files outside the repository (the shared reference notes) or to a page without docs/."""


def cited_files() -> list[Path]:
    files = [path for folder in CITING_FOLDERS for path in (ROOT / folder).rglob("*.py")]
    files += list((ROOT / "scripts").glob("*.sh")) + list(ROOT.glob("*.py")) + list(ROOT.glob("*.sh"))
    return sorted(set(files) - {Path(__file__).resolve()})


def citations(text: str) -> list[tuple[str, str | None]]:
    return [(page, section) for page, section in CITATION.findall(text.replace("\n", " "))]


def headings(page: Path) -> set[str]:
    return set(HEADING.findall(page.read_text()))


def test_cited_pages_and_sections_exist():
    problems = []
    for path in cited_files():
        for page, section in citations(path.read_text()):
            doc = ROOT / "docs" / page
            if not doc.is_file():
                problems.append(f"{path.relative_to(ROOT)}: docs/{page} does not exist")
            elif section and section not in headings(doc):
                problems.append(f"{path.relative_to(ROOT)}: docs/{page} has no section {section!r}")
    assert problems == []


def test_nothing_points_outside_the_repository():
    found = [
        f"{path.relative_to(ROOT)}:{number}: {line.strip()}"
        for path in cited_files()
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if OUTSIDE_REFERENCES.search(line)
    ]
    assert found == []


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('see docs/reward_math.md, "Labels".', [("reward_math.md", "Labels")]),
        ("(docs/vtg.md)", [("vtg.md", "")]),
        ('``docs/reward_math.md``, "Video frames"', [("reward_math.md", "Video frames")]),
        ('docs/reward_math.md, "No such heading"', [("reward_math.md", "No such heading")]),
    ],
)
def test_citations_are_read_with_their_section(text, expected):
    assert citations(text) == expected


def test_a_missing_section_is_reported(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("# Title\n\n## Labels\n")
    assert headings(page) == {"Title", "Labels"}
    assert "No such heading" not in headings(page)
