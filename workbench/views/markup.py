"""Every HTML fragment the views put in a widget, built from escaped values.

    from workbench.views.markup import html, join

    html("<b>{name}</b>: CAL penalty {cal:.3f}", name=face.name, cal=fa.cal)
    # '<b>&lt;img src=x onerror=...&gt;.jpg</b>: CAL penalty 0.123'
    join(" &nbsp; ", (html("branch {} q={:.2f}", i, q) for i, q in enumerate(quality)))

The template is the view's own markup, written in the source; every value put into it (a face's
name, which a file name or an upload's name chooses; a model's name; an error's text) is first
formatted with its format spec, then escaped by ``markupsafe``, the escaping Jinja (and so
Voila) already uses. A fragment built here is ``Markup``: put into another template it is kept
as it is, never escaped twice, while a plain ``str`` is always escaped. A widget's ``value``
takes the fragment as it is (``Markup`` is a ``str``). :func:`escape` is the same escaping for one
value in an f-string, as a plain ``str`` (adding a ``Markup`` to a ``str`` would escape the ``str``).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from markupsafe import Markup
from markupsafe import escape as _escape

__all__ = ["Markup", "escape", "html", "join", "text"]


def html(template: str, /, *args: Any, **values: Any) -> Markup:
    """``template.format(*args, **values)`` with every value escaped (after its format spec)."""
    return Markup(template).format(*args, **values)


def join(separator: str, parts: Iterable[Any]) -> Markup:
    """The parts, each escaped unless it is already a fragment, joined by the ``separator`` markup."""
    return Markup(separator).join(parts)


def text(value: Any) -> Markup:
    """A plain value as a fragment: ``str(value)`` escaped."""
    return _escape(str(value))


def escape(value: Any) -> str:
    """``str(value)`` escaped, as a plain ``str`` (for an f-string; ``html`` is the template form)."""
    return str(_escape(str(value)))
