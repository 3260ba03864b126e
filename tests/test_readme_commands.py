"""Every `cqa` command in a code block of the README and of the docs pages is a real subcommand
with real flags.

Each such command (continuations joined, comments dropped, ``VAR=value`` and ``nice`` prefixes and
``a && b`` chains split off; also ``python -m cqa_core.cli ...`` and ``torchrun ... -m cqa_core.cli
...``) is parsed by the CLI's own parser (``cqa_core.cli.build_parser``); argparse exits with code 2
on an unknown command or flag, a missing argument or a bad choice. Nothing is run. The pages are
README.md and every docs/*.md (the site built from them: tests/test_docs_site.py).
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from cqa_core.cli import build_parser

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
PAGES = [README, *sorted((ROOT / "docs").rglob("*.md"))]

# a line that may hold a cqa command: cheap to test before tokenising (an ASCII diagram with an
# apostrophe in it would not tokenise)
MAYBE = re.compile(r"(^|&&|;|\|)\s*([A-Za-z_]\w*=\S*\s+)*(nice\s+(-n\s*\d+\s+)?)?(\S*/bin/)?cqa(\s|$)"
                   r"|-m\s+cqa_core\.cli\b")
CHAIN = {"&&", "||", ";", "|"}


def _command(words: list[str]) -> list[str] | None:
    """The arguments after ``cqa`` in one simple command, or None when it is not a cqa command."""
    while words and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*=.*", words[0]):  # VAR=value cqa ...
        words = words[1:]
    if words[:1] == ["nice"]:
        words = words[3:] if words[1:2] == ["-n"] else words[1:]
    if words and (words[0] == "cqa" or words[0].endswith("/bin/cqa")):
        return words[1:]
    if "-m" in words:  # python -m cqa_core.cli ..., torchrun --nproc_per_node 8 -m cqa_core.cli ...
        i = words.index("-m")
        if words[i + 1:i + 2] == ["cqa_core.cli"]:
            return words[i + 2:]
    return None


def readme_commands(text: str) -> list[str]:
    """The `cqa ...` commands of the fenced code blocks, with backslash continuations joined and the
    optional parts of a synopsis (``[--flip]``, ``[--set key=value ...]``) left out."""
    out: list[str] = []
    for block in re.findall(r"^ *```[a-z]*\n(.*?)^ *```", text, flags=re.S | re.M):
        for line in block.replace("\\\n", " ").splitlines():
            if not MAYBE.search(line.split("#", 1)[0]):
                continue
            while re.search(r"\[[^\[\]]*\]", line):
                line = re.sub(r"\[[^\[\]]*\]", "", line)
            words = shlex.split(line, comments=True)
            segment: list[str] = []
            for word in [*words, ";"]:
                if word not in CHAIN:
                    segment.append(word)
                    continue
                args = _command(segment)
                if args is not None:
                    out.append(shlex.join(args))
                segment = []
    return out


COMMANDS = [(page, command) for page in PAGES for command in readme_commands(page.read_text())]


def test_the_readme_shows_commands():
    assert len(readme_commands(README.read_text())) >= 5


def test_the_docs_show_commands():
    pages = {page.name for page, _ in COMMANDS}
    assert {"install.md", "sharing.md", "data.md", "training.md", "benchmarks.md"} <= pages, pages
    assert len(COMMANDS) >= 30, len(COMMANDS)


@pytest.mark.parametrize("page, command", COMMANDS,
                         ids=[f"{page.relative_to(ROOT)}: {command}" for page, command in COMMANDS])
def test_a_readme_command_parses(page: Path, command: str, capsys):
    try:
        build_parser().parse_args(shlex.split(command))
    except SystemExit as exc:
        pytest.fail(f"{page.relative_to(ROOT)}: `cqa {command}` does not parse (exit {exc.code}): "
                    f"{capsys.readouterr().err.strip()}")


def test_the_check_catches_a_wrong_flag_and_skips_the_optional_parts():
    text = "```bash\ncqa eval --data lfw [--flip] \\\n  --protocol verify  # a comment\ncqa eval --nope\necho cqa\n```\n"
    assert readme_commands(text) == ["eval --data lfw --protocol verify", "eval --nope"]
    with pytest.raises(SystemExit):
        build_parser().parse_args(["eval", "--nope"])


def test_the_check_finds_commands_behind_prefixes_and_chains():
    text = ("```\nCQA_TOKEN=x nice -n 10 cqa workbench --host 0.0.0.0\ncd ~/a && .venv/bin/cqa info\n"
            "torchrun --nproc_per_node 8 -m cqa_core.cli train --config c.py\n"
            " a photo's path ──▶ cqa explain (PNG+JSON)\npython3 -m venv ~/cqa && . ~/cqa/bin/activate\n```\n")
    assert readme_commands(text) == ["workbench --host 0.0.0.0", "info", "train --config c.py"]
