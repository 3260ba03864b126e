"""The dashboard's first cell: a plain "loading" note that the server draws before any widget.

    from workbench.loading import notice; notice()       # cell 1 of dashboard.ipynb

When a lab opens the dashboard at once, a viewer's page can wait on its kernel and its browser
for a while before the widgets draw. This cell's output is plain HTML, rendered into the page by
Voila itself, so it shows as soon as the page arrives: "busy: N viewers are loading ahead of
you", with N from the analysis service (each kernel says hello when it starts and ready when
its first face is shown), or "loading the dashboard" when nobody is ahead. The dashboard's
widget tree carries a style rule that hides the note the moment the widgets draw, so it resolves
by itself. No torch, no model: the cell runs in a fraction of a second.
"""

from __future__ import annotations

import html
import json
import os
import urllib.request

HIDE_NOTICE = "<style>.cqa-loading { display: none !important; }</style>"
"""Put in the dashboard's widget tree: the note disappears once the widgets are drawn."""


def _post(path: str, body: dict) -> dict:
    url = os.environ.get("CQA_ANALYSIS_URL", "").rstrip("/")
    if not url:
        return {}
    req = urllib.request.Request(url + path, data=json.dumps(body).encode(), method="POST",
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=3) as resp:  # noqa: S310 - our own service
            return json.loads(resp.read())
    except (OSError, ValueError):
        return {}


def viewer_id() -> str:
    return f"kernel-{os.getpid()}"


def hello() -> int:
    """Tell the service this viewer is loading; returns how many viewers are loading ahead of it."""
    return int(_post("/viewers", {"event": "hello", "id": viewer_id()}).get("ahead", 0))


def ready() -> None:
    """Tell the service this viewer's dashboard is drawn (it stops counting as ahead of others)."""
    _post("/viewers", {"event": "ready", "id": viewer_id()})


def notice_html(ahead: int) -> str:
    text = (f"busy: {ahead} viewer{'s are' if ahead != 1 else ' is'} loading ahead of you; "
            "this page fills in by itself") if ahead else "loading the CQA-Face Workbench dashboard ..."
    return (f"<div class='cqa-loading' style='padding:12px;font-size:15px;color:#444'>"
            f"{html.escape(text)}</div>")


def notice() -> None:
    """Display the note (the dashboard notebook's first cell).

    A preheated kernel runs this before anyone asks for the page, so it only says "loading":
    its count would be stale by the time a viewer arrives.
    """
    from IPython.display import HTML, display

    ahead = hello()
    display(HTML(notice_html(0 if os.environ.get("VOILA_PREHEAT") == "True" else ahead)))
