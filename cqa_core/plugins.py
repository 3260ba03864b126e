"""Plug-ins from other packages: entry points that each name one function to call.

Three groups, one habit (pytest's and jupyter_server's):

| group             | the function                  | what it does                                          |
|-------------------|-------------------------------|-------------------------------------------------------|
| ``cqa.commands``  | ``register(subparsers)``      | adds a ``cqa`` sub-command (``cqa workbench``)        |
| ``cqa.recognizers`` | ``register()``              | ``cqa_core.recognizers.register_recognizer(...)``     |
| ``cqa.methods``   | ``register()``                | ``cqa_core.explain.methods.register(Method(...))``    |

A package declares them in its ``pyproject.toml``::

    [project.entry-points."cqa.recognizers"]
    constant = "my_package.constant:register"

A plug-in that cannot be imported or whose function fails is left out with one line on stderr
(``cqa: plug-in NAME (VALUE) of GROUP left out: why``); the others and the built-ins still work.

This module is the lowest layer: it imports nothing of the project.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from importlib.metadata import entry_points
from typing import Any

COMMANDS = "cqa.commands"
RECOGNIZERS = "cqa.recognizers"
METHODS = "cqa.methods"

_done: set[str] = set()
"""Groups whose plug-ins have registered themselves once in this process (see :func:`load_plugins`)."""


def _say(line: str) -> None:
    print(line, file=sys.stderr)


def load_plugins(group: str, *args: Any, once: bool = True, report: Callable[[str], None] = _say) -> list[str]:
    """Load every entry point of ``group`` and call its function with ``args``.

    Args:
        group: the entry-point group (:data:`COMMANDS`, :data:`RECOGNIZERS`, :data:`METHODS`).
        *args: what each function is called with (the sub-parsers for commands; nothing for registries).
        once: call each group's functions once per process (a registry must not see a name twice); a
            second call is then a no-op returning ``[]``. False calls them every time (a new parser).
        report: where the one line about a broken plug-in goes (stderr by default).

    Returns:
        The names of the plug-ins whose function ran without error.
    """
    if once:
        if group in _done:
            return []
        _done.add(group)
    loaded = []
    for point in entry_points(group=group):
        try:
            point.load()(*args)
        except Exception as exc:  # a third-party package: any failure leaves it out, in one line
            why = " ".join(str(exc).split()) or type(exc).__name__
            report(f"cqa: plug-in {point.name} ({point.value}) of {group} left out: {type(exc).__name__}: {why}")
            continue
        loaded.append(point.name)
    return loaded
