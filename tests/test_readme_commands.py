"""Every `cqa` command in a code block of the README is a real subcommand with real flags.

Each such line (continuations joined, comments dropped) is parsed by the CLI's own parser
(``cqa_core.cli.build_parser``); argparse exits with code 2 on an unknown command or flag, a
missing argument or a bad choice. Nothing is run.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from cqa_core.cli import build_parser

README = Path(__file__).resolve().parents[1] / "README.md"


def readme_commands(text: str) -> list[str]:
    """The `cqa ...` lines of the fenced code blocks, with backslash continuations joined and the
    optional parts of a synopsis (``[--flip]``, ``[--set key=value ...]``) left out."""
    out: list[str] = []
    for block in re.findall(r"^```[a-z]*\n(.*?)^```", text, flags=re.S | re.M):
        for line in block.replace("\\\n", " ").splitlines():
            while re.search(r"\[[^\[\]]*\]", line):
                line = re.sub(r"\[[^\[\]]*\]", "", line)
            words = shlex.split(line, comments=True)
            if words[:1] == ["cqa"] or words[:2] in (["nice", "cqa"], [".venv/bin/cqa"]):
                out.append(shlex.join(words[words.index("cqa") + 1 if "cqa" in words else 1:]))
    return out


COMMANDS = readme_commands(README.read_text())


def test_the_readme_shows_commands():
    assert len(COMMANDS) >= 5, COMMANDS


@pytest.mark.parametrize("command", COMMANDS)
def test_a_readme_command_parses(command: str, capsys):
    try:
        build_parser().parse_args(shlex.split(command))
    except SystemExit as exc:
        pytest.fail(f"`cqa {command}` does not parse (exit {exc.code}): {capsys.readouterr().err.strip()}")


def test_the_check_catches_a_wrong_flag_and_skips_the_optional_parts():
    text = "```bash\ncqa eval --data lfw [--flip] \\\n  --protocol verify  # a comment\ncqa eval --nope\necho cqa\n```\n"
    assert readme_commands(text) == ["eval --data lfw --protocol verify", "eval --nope"]
    with pytest.raises(SystemExit):
        build_parser().parse_args(["eval", "--nope"])
