"""The dashboard's first cell: a plain "loading" note that the server draws before any widget.

    settings = Settings.from_env(); notice(settings)     # cell 1 of dashboard.ipynb

When a lab opens the dashboard at once, a viewer's page can wait on its kernel and its browser
for a while before the widgets draw. This cell's output is plain HTML, rendered into the page by
Voila itself, so it shows as soon as the page arrives: "busy: N viewers are loading ahead of
you", with N from the analysis service (each kernel says hello when it starts and ready when
its first face is shown, through the same ``ServiceClient`` the views use), or "loading the
dashboard" when nobody is ahead. The dashboard's widget tree carries a style rule that hides the
note the moment the widgets draw, so it resolves by itself. No torch, no model: the cell runs in
a fraction of a second.
"""

from __future__ import annotations

import os

from cqa_core.settings import Settings
from workbench.client import ServiceClient
from workbench.views.markup import escape

HIDE_NOTICE = "<style>.cqa-loading { display: none !important; }</style>"
"""Put in the dashboard's widget tree: the note disappears once the widgets are drawn."""
PREHEATED = os.environ.get("VOILA_PREHEAT") == "True"
"""Voila sets this in a kernel it starts ahead of any visitor (``preheat_kernel``)."""


def viewer_id() -> str:
    return f"kernel-{os.getpid()}"


def hello(client: ServiceClient) -> int:
    """Tell the service this viewer is loading; returns how many viewers are loading ahead of it."""
    return int(client.viewer("hello", viewer_id()).get("ahead", 0))


def ready(backend: object) -> None:
    """Tell the service this viewer's dashboard is drawn (it stops counting as ahead of others)."""
    if isinstance(backend, ServiceClient):
        backend.viewer("ready", viewer_id())


def notice_html(ahead: int) -> str:
    text = (f"busy: {ahead} viewer{'s are' if ahead != 1 else ' is'} loading ahead of you; "
            "this page fills in by itself") if ahead else "loading the CQA-Face Workbench dashboard ..."
    return (f"<div class='cqa-loading' style='padding:12px;font-size:15px;color:#444'>"
            f"{escape(text)}</div>")


def notice(settings: Settings) -> None:
    """Display the note (the dashboard notebook's first cell).

    A preheated kernel runs this before anyone asks for the page, so it only says "loading":
    its count would be stale by the time a viewer arrives.
    """
    from IPython.display import (  # the notebook's display machinery: only inside a kernel
        HTML,
        display,
    )

    ahead = hello(ServiceClient(settings.service_url, settings.service_token)) if settings.service_url else 0
    display(HTML(notice_html(0 if PREHEATED else ahead)))
