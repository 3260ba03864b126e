"""docs/cli.md against the CLI's own parser: every `cqa` subcommand (plug-ins such as `cqa workbench`
included) has a section headed "## `cqa NAME`", no section names a command that does not exist, and
every flag a section mentions is a flag of the command it is written for."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from cqa_core.cli import build_parser

ROOT = Path(__file__).resolve().parents[1]
CLI_MD = ROOT / "docs" / "cli.md"
HEADING = re.compile(r"^## `cqa ([a-z][a-z0-9-]*)`\s*$", re.M)
FLAG = re.compile(r"(?<![\w-])--[a-z][a-z0-9_-]*")
CALL = re.compile(r"\bcqa(?:_core\.cli)? ([a-z][a-z0-9-]*)")
SPAN = re.compile(r"```[a-z]*\n(.*?)```|`([^`\n]+)`", re.S)


def subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    """A parser's sub-commands by name (empty when it has none)."""
    for action in parser._actions:  # argparse keeps sub-commands only here
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def own_flags(parser: argparse.ArgumentParser) -> set[str]:
    """The long flags of a parser itself (``cqa --debug``), not of its sub-commands."""
    return {s for a in parser._actions for s in a.option_strings if s.startswith("--")}


def flags_of(parser: argparse.ArgumentParser) -> set[str]:
    """Every long flag of a parser and of its own sub-commands (``cqa data fetch|pack``)."""
    return own_flags(parser).union(*(flags_of(p) for p in subparsers(parser).values()))


def sections(text: str) -> dict[str, str]:
    """The text of each "## `cqa NAME`" section, up to the next "## " heading."""
    heads = list(HEADING.finditer(text))
    out = {}
    for h in heads:
        end = text.find("\n## ", h.end())
        out[h.group(1)] = text[h.end(): end if end >= 0 else len(text)]
    return out


def documented_flags(name: str, body: str) -> list[tuple[str, str]]:
    """(command, flag) for each flag in a section: a flag after `cqa OTHER` in the same code line or
    code span belongs to OTHER; flags before a call (``torchrun --nproc_per_node 8 -m cqa_core.cli``)
    belong to another program and are skipped; every other flag belongs to the section's command."""
    pieces: list[str] = []
    for m in SPAN.finditer(body):
        pieces += m.group(1).splitlines() if m.group(1) is not None else [m.group(2)]
    pieces.append(SPAN.sub(" ", body))  # the prose around the code
    out = []
    for piece in pieces:
        calls = list(CALL.finditer(piece))
        if calls:
            for call, nxt in zip(calls, [*calls[1:], None], strict=True):
                tail = piece[call.end(): nxt.start() if nxt else len(piece)]
                out += [(call.group(1), f) for f in FLAG.findall(tail)]
        else:
            out += [(name, f) for f in FLAG.findall(piece)]
    return out


def test_every_subcommand_has_a_section_and_no_section_is_stale():
    commands = subparsers(build_parser())
    assert {"audit", "compare", "workbench", "eval", "explain"} <= set(commands)  # the plug-in is loaded
    documented = sections(CLI_MD.read_text())
    assert sorted(set(commands) - set(documented)) == [], "subcommands without a section in docs/cli.md"
    assert sorted(set(documented) - set(commands)) == [], "sections of docs/cli.md for no subcommand"


def test_every_documented_flag_exists():
    parser = build_parser()
    commands = subparsers(parser)
    common = own_flags(parser)  # cqa --debug, and --help everywhere
    assert common == {"--debug", "--help"}, common
    checked, wrong = 0, []
    for name, body in sections(CLI_MD.read_text()).items():
        for command, flag in documented_flags(name, body):
            checked += 1
            if command not in commands or flag not in flags_of(commands[command]) | common:
                wrong.append(f"`cqa {command}` {flag} (section `cqa {name}`)")
    assert wrong == [], wrong
    assert checked >= 40, checked  # the sections do name their flags


def test_the_flag_check_can_fail():
    body = "```bash\ncqa eval --data lfw --nope\ntorchrun --nproc_per_node 8 -m cqa_core.cli audit lfw --out x\n```\n" \
           "Prose: `--flip` and `cqa compare RUN_A RUN_B --show 3`, and --bogus.\n"
    assert documented_flags("eval", body) == [
        ("eval", "--data"), ("eval", "--nope"), ("audit", "--out"),
        ("eval", "--flip"), ("compare", "--show"), ("eval", "--bogus")]
    commands = subparsers(build_parser())
    assert "--nope" not in flags_of(commands["eval"]) and "--show" in flags_of(commands["compare"])
    assert "--terminal" not in flags_of(commands["eval"]) | own_flags(build_parser())  # another command's flag
    assert {"--dest", "--align"} <= flags_of(commands["data"])  # cqa data fetch's flags count for cqa data
    assert set(sections("## `cqa a`\nx --f\n## `cqa b`\ny\n## Other\nz --g\n")) == {"a", "b"}
