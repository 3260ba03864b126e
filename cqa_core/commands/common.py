"""What every ``cqa`` command shares: the ``--model`` flag, the settings, and one-line errors.

``execute(args)`` is the entry point's last step (``cqa_core.cli.main``, and
``python -m cqa_core.commands.train``): it builds the one ``Settings`` from the environment and
the command's settings flags (``--faces``), hands it to the command as ``args.settings`` and turns
every expected failure into one line ``cqa COMMAND: error: ...`` with exit code 2 (``--debug``
shows the traceback).

``--model SPEC`` names the model of every command that uses one; ``--checkpoint`` is its old name,
accepted with a one-line note on stderr. The model travels as that flag only: ``Settings.checkpoint``
(env ``CQA_CHECKPOINT``) is what the spec ``default`` means when no ``--model`` is given.
"""

from __future__ import annotations

import argparse
import pickle
import sys
from collections.abc import Sequence
from typing import Any

from cqa_core.settings import Settings

# What a user can cause with inputs and environment: reported in one line, not as a traceback.
EXPECTED_ERRORS = (ValueError, OSError, RuntimeError, ImportError, SyntaxError, EOFError, pickle.UnpicklingError)
MAX_MESSAGE = 500
SETTINGS_FLAGS = ("faces",)
"""Command flags that are settings: given, they win over the environment."""
MODEL_HELP = ("any recognizer: PATH.safetensors (CQA-Face, or a run folder), PATH.pth (insightface iResNet), "
              "PATH.onnx, dlib, or a plug-in's name (default: $CQA_CHECKPOINT, else the bundled CQA-Face)")


class DeprecatedAlias(argparse.Action):
    """An old flag name: stores into the new one's ``dest`` and says so in one line on stderr."""

    def __init__(self, option_strings: Sequence[str], dest: str, new: str = "", **kwargs: Any) -> None:
        self.new = new
        super().__init__(option_strings, dest, **kwargs)

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: str | None = None) -> None:
        print(f"note: {option_string} is deprecated; use {self.new} (same meaning)", file=sys.stderr)
        setattr(namespace, self.dest, values)


def add_model_argument(p: argparse.ArgumentParser, help: str = MODEL_HELP) -> None:
    """``--model SPEC`` (dest ``model``), and ``--checkpoint`` as its deprecated alias."""
    p.add_argument("--model", default=None, metavar="SPEC", help=help)
    p.add_argument("--checkpoint", dest="model", action=DeprecatedAlias, new="--model", metavar="SPEC",
                   help="deprecated: the same as --model")


def execute(args: argparse.Namespace, environ: dict[str, str] | None = None) -> int:
    """Run ``args.func(args)`` with ``args.settings`` built here; expected errors as one line, exit 2."""
    try:
        args.settings = Settings.from_env(environ, **{k: getattr(args, k, None) for k in SETTINGS_FLAGS})
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except EXPECTED_ERRORS as exc:
        if getattr(args, "debug", False):
            raise
        print(f"cqa {args.command}: error: {one_line(exc)}", file=sys.stderr)
        return 2


def one_line(exc: BaseException) -> str:
    """An exception as one line: whitespace collapsed, long messages cut (``--debug`` has all)."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    if len(text) > MAX_MESSAGE:
        text = text[: MAX_MESSAGE - 40].rstrip() + " ... (run with --debug for the rest)"
    return text


def main_of(register: Any, command: str, argv: Sequence[str] | None = None) -> int:
    """``python -m cqa_core.commands.NAME ...`` = ``cqa NAME ...`` (what torchrun launches): a parser
    holding only that command (``register(subparsers)``), run by :func:`execute`."""
    parser = argparse.ArgumentParser(prog="cqa")
    parser.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
    register(parser.add_subparsers(dest="command", required=True, metavar="COMMAND"))
    return execute(parser.parse_args([command, *(sys.argv[1:] if argv is None else argv)]))
