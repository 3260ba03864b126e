"""Plotly figures for the dashboard: every FigureWidget comes from :func:`figure_widget`.

A plotly FigureWidget is an anywidget whose front-end code (plotly's ``widgetbundle.js``, ~5 MB)
travels inside the widget: every figure sent the whole bundle over the page's websocket and the
browser evaluated it again, about 1.5 s a figure (the Benchmark tab's seven charts took 11.5 s to
draw). Under ``cqa workbench`` the Voila server serves that file itself and tells its kernels
where (:data:`BUNDLE_ENV`); a figure then carries a two-line module that imports it from there,
so the browser fetches it once, caches it, and evaluates it once per page. Elsewhere (JupyterLab,
a notebook, tests) :data:`BUNDLE_ENV` is unset and a figure is plotly's own FigureWidget.
"""

from __future__ import annotations

import functools
import json
import os
from typing import Any

import plotly.graph_objects as go

BUNDLE_ENV = "CQA_PLOTLY_BUNDLE"
"""The page path of plotly's widget bundle, set by ``workbench.voila_server`` for its kernels."""


@functools.cache
def figure_class(bundle: str | None) -> type[go.FigureWidget]:
    """FigureWidget, or its subclass whose front-end module imports ``bundle`` (a path on the page's host)."""
    if not bundle:
        return go.FigureWidget
    stub = (f"const bundle = await import(new URL({json.dumps(bundle)}, document.baseURI).href);\n"
            "export default bundle.default;\n")
    return type("PageFigure", (go.FigureWidget,), {"_esm": stub, "__module__": __name__})


def figure_widget(*args: Any, **kwargs: Any) -> go.FigureWidget:
    """A ``go.FigureWidget(*args, **kwargs)`` that loads plotly's bundle from the workbench when it serves it."""
    return figure_class(os.environ.get(BUNDLE_ENV) or None)(*args, **kwargs)
