"""The warning a map method carries beside its name (``Method.caveat``: maps that survive model
randomisation, measured on the explanation leaderboard), as one escaped line under a map's title."""

from __future__ import annotations

from typing import Any

from workbench.views.markup import html

CAVEAT_STYLE = "color:#8a5300;font-size:90%;max-width:420px"


def caveat_note(record: dict[str, Any] | None) -> str:
    """'' for a method without a caveat (or no method), else ``<div class='cqa-method-caveat'>``."""
    caveat = (record or {}).get("caveat", "")
    if not caveat:
        return ""
    return str(html("<div class='cqa-method-caveat' style='{style}'>&#9888; {text}</div>", style=CAVEAT_STYLE,
                    text=caveat))
