"""README.md is a short user guide that starts with the install and test commands; README and docs/ speak of the
project only."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
INSTALL = ('python3 -m venv .venv && . .venv/bin/activate && pip install -c constraints.txt -e ".[all]" '
           "&& mmgr quickstart")
TEST = ". .venv/bin/activate && pytest -q"


def documents() -> list[Path]:
    return [README, *sorted((ROOT / "docs").glob("*.md"))]


def test_readme_is_short():
    assert len(README.read_text().splitlines()) < 350


def test_readme_starts_with_the_two_commands():
    blocks = re.findall(r"```(\w*)\n(.*?)```", README.read_text(), re.DOTALL)
    assert blocks[0] == ("bash", INSTALL + "\n")
    assert blocks[1] == ("bash", TEST + "\n")
    lines = README.read_text().splitlines()
    assert lines[0].startswith("# mmgr")
    assert lines.index(TEST) < 12            # both on the first screen


def test_readme_python_example_follows_its_marker():
    text = README.read_text()
    after = text.split("<!-- python-example -->\n", 1)[1]
    assert after.startswith("```python\nimport mmgr\n")
    assert "mmgr.load(" in after.split("```", 2)[1]


def test_no_line_over_600_characters():
    for path in documents():
        for number, line in enumerate(path.read_text().splitlines(), 1):
            assert len(line) <= 600, f"{path.name}:{number} has {len(line)} characters"


def test_docs_speak_of_the_project_only():
    pattern = re.compile(r"session\s*#?\s*\d+|sessions\s+\d+|issue\s*#", re.IGNORECASE)
    for path in documents():
        for number, line in enumerate(path.read_text().splitlines(), 1):
            assert not pattern.search(line), f"{path.name}:{number}: {line.strip()[:120]}"


def test_mkdocs_nav_lists_every_page():
    config = (ROOT / "mkdocs.yml").read_text()
    pages = {p.name for p in (ROOT / "docs").glob("*.md")}
    listed = set(re.findall(r":\s*([\w-]+\.md)\s*$", config, re.MULTILINE))
    assert pages == listed
