"""``cqa`` command line: one sub-command per module in ``cqa_core.commands``.

Each command module defines ``register(subparsers)`` (cheap: no torch import at module top)
and the ``run(args) -> int`` function it sets as the parser default. Other packages contribute
commands through the entry-point group ``cqa.commands`` (a ``register`` function): ``cqa
workbench`` comes from the workbench package this way, so ``cqa_core`` never imports it.

Settings: ``main`` builds one ``Settings`` from the environment and the command's flags
(``--checkpoint``, ``--faces``) and hands it to the command as ``args.settings``.

Errors: every expected failure (bad or missing files, refused pickles, wrong checkpoints, a
missing optional package, a preset that does not parse) is printed as one line
``cqa COMMAND: error: ...`` on stderr with exit code 2; ``cqa --debug ...`` shows the traceback.
"""

from __future__ import annotations

import argparse
import importlib
import pickle
import sys
from importlib.metadata import entry_points

from cqa_core.settings import Settings

# What a user can cause with inputs and environment: reported in one line, not as a traceback.
EXPECTED_ERRORS = (ValueError, OSError, RuntimeError, ImportError, SyntaxError, EOFError, pickle.UnpicklingError)
MAX_MESSAGE = 500

COMMANDS = ("info", "align", "data", "eval", "audit", "train", "distill_targets", "explain", "export",
            "import_backbone")
PLUGINS = "cqa.commands"
"""Entry-point group of commands other packages contribute (``workbench = workbench.command:register``)."""
SETTINGS_FLAGS = ("checkpoint", "faces")
"""Command flags that are settings: given, they win over the environment."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cqa", description="CQA-Face workbench command line")
    parser.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"cqa_core.commands.{name}").register(sub)
    for plugin in entry_points(group=PLUGINS):
        plugin.load()(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        args.settings = Settings.from_env(**{k: getattr(args, k, None) for k in SETTINGS_FLAGS})
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except EXPECTED_ERRORS as exc:
        if args.debug:
            raise
        print(f"cqa {args.command}: error: {one_line(exc)}", file=sys.stderr)
        return 2


def one_line(exc: BaseException) -> str:
    """An exception as one line: whitespace collapsed, long messages cut (``--debug`` has all)."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    if len(text) > MAX_MESSAGE:
        text = text[: MAX_MESSAGE - 40].rstrip() + " ... (run with --debug for the rest)"
    return text


if __name__ == "__main__":
    sys.exit(main())
