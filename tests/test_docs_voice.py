"""The documentation reads as a user's guide, not as a project log.

Every page of the site (docs/**/*.md), the README and the notebooks' markdown cells describe the
product: no "issue 11", no "this session" or "the other engineers", no first person (I, we, our,
us, my, me). The project's history, with its dates and figures, lives on one page,
docs/project-log.md, which this check leaves out. Code (fenced blocks, indented blocks, inline
`code`), block quotes and text in double quotes are not prose and are skipped: a quoted message or
a command may say anything.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
HISTORY_PAGE = ROOT / "docs" / "project-log.md"

# (name, pattern): what a user's guide does not say. "I" is matched in capitals only, the rest in
# any case; "I/O" and "I." (an initial) are not the pronoun, nor "us" after a number (microseconds).
# A plain "this machine" is allowed: the sharing page means the reader's own computer by it.
RULES: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("issue number", re.compile(r"\bissues?\s*#?\s*\d+", re.IGNORECASE)),
    ("session", re.compile(r"\b(?:this|that|same|previous|earlier|next) session\b|\bsessions so far\b", re.IGNORECASE)),
    ("other engineers", re.compile(r"\b(other|another) engineers?\b|\bengineers'", re.IGNORECASE)),
    ("the project's machine", re.compile(r"\bthis (?:project's |shared |\d+-core )+(?:machine|VM|CPU)\b|\bthis VM\b",
                                         re.IGNORECASE)),
    ("first person", re.compile(r"\b(?:I(?![/.\-])(?:'m|'ve|'d)?|[Ww]e(?:'re|'ve|'d)?|[Oo]urs?|(?<!\d )(?<!\d)[Uu]s|[Mm]y|[Mm]e"
                                r"|[Oo]urselves)\b")),
)


def _pages() -> list[Path]:
    """Every markdown page the site or the repository front shows, the project log aside."""
    pages = sorted(p for p in (ROOT / "docs").rglob("*.md") if "notebooks" not in p.parts)
    return [ROOT / "README.md", *[p for p in pages if p != HISTORY_PAGE]]


def _notebook_markdown() -> dict[str, str]:
    """The markdown cells of each notebook, joined: the notebooks are pages of the site too."""
    texts = {}
    for nb in sorted((ROOT / "notebooks").glob("*.ipynb")):
        cells = json.loads(nb.read_text())["cells"]
        texts[str(nb.relative_to(ROOT))] = "\n\n".join(
            "".join(c["source"]) if isinstance(c["source"], list) else c["source"]
            for c in cells if c["cell_type"] == "markdown")
    return texts


def prose_lines(text: str) -> list[tuple[int, str]]:
    """(line number, prose) for each line, with code, block quotes and double-quoted text blanked.

    Args:
        text: a markdown document.

    Returns:
        One entry per line that is prose, 1-based, with inline code spans and "quoted text" removed.
    """
    out: list[tuple[int, str]] = []
    fence: str | None = None
    previous_blank = True
    in_code_span = False
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.lstrip()
        marker = re.match(r"(```+|~~~+)", stripped)
        if marker:
            if fence is None:
                fence = marker.group(1)[:3]
            elif stripped.startswith(fence):
                fence = None
            continue
        indented_code = previous_blank and line.startswith("    ") and not re.match(r"\s*([-*+]|\d+\.)\s", line)
        previous_blank = not stripped or (indented_code and previous_blank)
        if fence is not None or indented_code or stripped.startswith(">"):
            continue
        if not stripped:
            in_code_span = False  # a code span ends with its paragraph
        if in_code_span:  # a `code span` that began on an earlier line
            if "`" not in line:
                continue
            line, in_code_span = line.split("`", 1)[1], False
        prose = re.sub(r"`[^`]*`", " ", line)
        if "`" in prose:  # an opening backtick whose span goes on to the next line
            prose, in_code_span = prose.split("`", 1)[0], True
        prose = re.sub(r"\"[^\"]*\"|\u201c[^\u201d]*\u201d", " ", prose)
        prose = re.sub(r"\]\([^)]*\)", "]", prose)  # a link's address is not prose
        prose = re.sub(r"<[^>]+>", " ", prose)  # nor an HTML tag's attributes
        out.append((number, prose))
    return out


def offences(text: str) -> list[str]:
    """Every rule broken in a document's prose, one 'line N: rule: text' string each.

    Args:
        text: a markdown document.

    Returns:
        The offending lines, in order; empty when the document reads as a user's guide.
    """
    found = []
    for number, prose in prose_lines(text):
        for name, pattern in RULES:
            match = pattern.search(prose)
            if match:
                found.append(f"line {number}: {name} ({match.group(0)!r}): {prose.strip()[:120]}")
    return found


def test_the_checker_finds_what_it_should_and_skips_code():
    text = (
        "# Title\n"
        "Measured in issue 11 by the lead.\n"
        "I stopped it at epoch 31.\n"
        "Our additions and what we read.\n"
        "Run `cqa eval --issue 3` or see the I/O notes.\n"
        "```bash\n"
        "# we ran this in issue 4\n"
        "```\n"
        "> We quote a user here.\n"
        'The page says "we are busy" in its banner.\n'
        "Other engineers shared this 2-core machine in this session.\n"
    )
    got = offences(text)
    assert [g.split(":")[0] for g in got] == ["line 2", "line 3", "line 4", "line 11", "line 11", "line 11"], got
    assert "issue number" in got[0] and "first person" in got[1] and "first person" in got[2]
    assert {g.split(" (")[0].split(": ")[1] for g in got[3:]} == {"session", "other engineers", "the project's machine"}
    assert offences("Training was stopped after epoch 31 because dev accuracy had stopped rising.\n") == []
    assert offences("    indented code: we ran it\n") == []  # an indented block after a blank line
    assert offences("Stop it on this machine; 250 us per item; a `span\nwe ran` ends.\n") == []


def test_the_history_page_exists_and_is_in_the_nav():
    assert HISTORY_PAGE.is_file()
    assert "project-log.md" in (ROOT / "mkdocs.yml").read_text()


@pytest.mark.parametrize("page", _pages(), ids=lambda p: str(p.relative_to(ROOT)))
def test_a_page_reads_as_a_users_guide(page: Path):
    found = offences(page.read_text())
    assert not found, f"{page.relative_to(ROOT)} reads like a project log (history goes to docs/project-log.md):\n" + "\n".join(found)


@pytest.mark.parametrize("notebook", sorted(_notebook_markdown()), ids=str)
def test_a_notebooks_text_reads_as_a_users_guide(notebook: str):
    found = offences(_notebook_markdown()[notebook])
    assert not found, f"{notebook}'s markdown cells read like a project log:\n" + "\n".join(found)
