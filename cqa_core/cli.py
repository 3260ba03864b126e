"""``cqa`` command line: one sub-command per module in ``cqa_core.commands``.

Each command module defines ``register(subparsers)`` (cheap: no torch import at module top)
and the ``run(args) -> int`` function it sets as the parser default. Other packages contribute
commands through the entry-point group ``cqa.commands`` (a ``register`` function, called by
``cqa_core.plugins``): ``cqa workbench`` comes from the workbench package this way, so
``cqa_core`` never imports it.

Settings: ``main`` is the entry point; ``commands.common.execute`` builds one ``Settings`` from the
environment and the command's settings flags and hands it to the command as ``args.settings``.

Errors: every expected failure (bad or missing files, refused pickles, wrong checkpoints, a
missing optional package, a preset that does not parse) is printed as one line
``cqa COMMAND: error: ...`` on stderr with exit code 2; ``cqa --debug ...`` shows the traceback.
"""

from __future__ import annotations

import argparse
import sys

from cqa_core.commands import (
    align,
    audit,
    compare,
    data,
    distill_targets,
    eval,
    explain,
    export,
    import_backbone,
    info,
    train,
)
from cqa_core.commands.common import execute
from cqa_core.plugins import COMMANDS as PLUGINS
from cqa_core.plugins import load_plugins

COMMANDS = (info, align, data, eval, compare, audit, train, distill_targets, explain, export, import_backbone)
"""The built-in command modules, in the order ``cqa --help`` lists them."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cqa", description="CQA-Face workbench command line")
    parser.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in COMMANDS:
        command.register(sub)
    load_plugins(PLUGINS, sub, once=False)
    return parser


def main(argv: list[str] | None = None) -> int:
    return execute(build_parser().parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
