"""``cqa`` command line: one sub-command per module in ``cqa_core.commands``.

Each command module defines ``register(subparsers)`` (cheap: no torch import at module top)
and the ``run(args) -> int`` function it sets as the parser default.
"""

from __future__ import annotations

import argparse
import importlib
import sys

COMMANDS = ("info", "align", "data", "eval", "train", "distill_targets", "explain", "export", "import_backbone",
            "workbench")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cqa", description="CQA-Face workbench command line")
    parser.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMANDS:
        try:
            module = importlib.import_module(f"cqa_core.commands.{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"cqa_core.commands.{name}":
                continue  # command not built yet
            raise
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except (ValueError, FileNotFoundError, RuntimeError) as exc:
        if args.debug:
            raise
        print(f"cqa {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
