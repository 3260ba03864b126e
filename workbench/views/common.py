"""Pieces every view shares: the one message area, PNG images, small plotly figures.

Every callback a view registers goes through :meth:`Messages.guard`: an exception becomes a
short plain message in the one visible message area (the traceback only in debug mode:
``Settings.debug``, env ``CQA_DEBUG=1``), and the kernel keeps running.
"""

from __future__ import annotations

import functools
import io
import traceback
from collections.abc import Callable
from typing import Any

import ipywidgets as W
import numpy as np
import plotly.graph_objects as go
from PIL import Image

from cqa_core.explain.maprender import PER_MAP, MapScale, colour
from cqa_core.explain.pictures import bar, legend, on_photo
from workbench.views.figures import figure_widget
from workbench.views.markup import escape

READING_STYLE = "font-size:11px;line-height:1.3;color:#444"
"""Small print beside a picture or chart (its scale, how it reads): tight lines, not the widgets' 28 px."""


def reading(text: str, cls: str, width: str = "") -> W.HTML:
    """A caption of small print (escaped ``text``) with a CSS class, ``width`` wide when given."""
    w = caption(f"<div style='{READING_STYLE}'>{escape(text)}</div>", cls)
    if width:
        w.layout.width = width
    return w


def plain(exc: BaseException) -> str:
    """A one-line message for a user: the error's own words, never a stack."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text if len(text) < 300 else text[:297] + "..."


BANNER_STYLE = ("<style>.cqa-errors { position: sticky; top: 0; z-index: 20; background: #fff; }"
                ".cqa-errors:not(:empty) > div { padding: 4px 8px; border-bottom: 1px solid #ddd; }"
                ".cqa-dashboard, .jp-OutputArea:has(.cqa-dashboard), .jp-OutputArea-child:has(.cqa-dashboard),"
                " .jp-OutputArea-output:has(.cqa-dashboard) { overflow: visible !important; }</style>")
"""Put in the dashboard's widget tree: the message banner stays in view at the top when the page
scrolls (sticky needs every box between it and the page's scroller to let it overflow)."""


class Messages:
    """The single message area: a banner under the dashboard's header (class ``cqa-errors``), kept in
    view when the page scrolls (:data:`BANNER_STYLE`), so a message is never below the fold."""

    def __init__(self, debug: bool = False) -> None:
        """``debug``: show tracebacks under the message (``Settings.debug``)."""
        self.debug = debug
        self.widget = W.HTML(value="", layout=W.Layout(min_height="1.6em"))
        self.widget.add_class("cqa-errors")
        self.last_error: str | None = None

    def error(self, exc: BaseException) -> None:
        """Show an exception in plain words (plus the traceback in debug mode)."""
        self.last_error = plain(exc)
        body = f"<b>Error:</b> {escape(self.last_error)}"
        if self.debug:
            tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
            body += f"<pre style='font-size:11px'>{escape(tb)}</pre>"
        self.widget.value = f"<div class='cqa-error' style='color:#b00020'>{body}</div>"

    def info(self, text: str) -> None:
        """Show a neutral note (replaces any error)."""
        self.last_error = None
        self.widget.value = f"<div class='cqa-info' style='color:#555'>{escape(text)}</div>"

    def warn(self, text: str) -> None:
        """Show a warning the viewer must not miss (bold, amber; replaces any error)."""
        self.last_error = None
        self.widget.value = (f"<div class='cqa-warning' style='color:#a04000;font-weight:bold'>"
                             f"{escape(text)}</div>")

    def clear(self) -> None:
        self.last_error = None
        self.widget.value = ""

    def guard(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        """Wrap a callback: clear old errors, run it, show any exception instead of raising."""

        @functools.wraps(fn)
        def wrapped(*args: Any, **kwargs: Any) -> Any:
            if self.last_error is not None:
                self.clear()
            try:
                return fn(*args, **kwargs)
            except Exception as exc:  # noqa: BLE001 - every callback error goes to the message area
                self.error(exc)
                return None

        return wrapped


def plain_note(session: Any, what: str, model: str | None = None) -> str:
    """One line on why a view shows nothing for a recognizer without CQA-Face's branches."""
    info = session.info(model)
    return f"{what}: {info['name']} is a plain recognizer ({info['kind']}) with no branches or QAN"


def show_parts(parts: list, on: bool) -> None:
    """Show or hide (``display: none``) the widgets a view draws only for a model with branches, so a
    plain recognizer's tab keeps nothing drawn for the model before it."""
    for w in parts:
        w.layout.display = None if on else "none"


def branch_scan(session: Any, faces: list, what: str) -> list:
    """The gallery faces a scan over branch outputs runs on, or a one-line ValueError: no faces, or
    ``what`` needs branches and the current model has none (:func:`plain_note`)."""
    if not faces:
        raise ValueError("no gallery faces to scan")
    if not session.info()["branches"]:
        raise ValueError(plain_note(session, what))
    return faces


def png(image: np.ndarray, size: int | None = None) -> bytes:
    """Encode an RGB uint8 image as PNG bytes, optionally resized to ``size`` px wide."""
    im = Image.fromarray(np.asarray(image, dtype=np.uint8))
    if size and im.width != size:
        im = im.resize((size, max(1, round(im.height * size / im.width))), Image.BILINEAR)
    buf = io.BytesIO()
    im.save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


def image_widget(width: int, cls: str) -> W.Image:
    """An empty PNG image widget with a CSS class."""
    w = W.Image(format="png", width=width, layout=W.Layout(width=f"{width}px", height="auto"))
    w.add_class(cls)
    return w


def caption(text: str, cls: str) -> W.HTML:
    """A small caption label with a CSS class."""
    w = W.HTML(value=text)
    w.add_class(cls)
    return w


def overlay_on(face, chip_map: np.ndarray, scale: MapScale, alpha: float,
               photo_map: np.ndarray | None = None) -> np.ndarray:
    """A map of the face's chip drawn on its photo on ``scale`` (``explain.pictures.on_photo``): the
    one rendering the CLI and the case sheet use too; ``alpha`` is the opacity slider's value,
    ``photo_map`` the map already warped onto the photo (branch attention)."""
    return on_photo(face, chip_map, scale, alpha, photo_map)


class MapPicture:
    """A map on a photo as the views show it: title, picture, colour bar with the unit, and one line
    with the range, normalisation and (signed maps) how the colours read."""

    def __init__(self, width: int, cls: str, title_cls: str = "cqa-map-title") -> None:
        self.width = width
        self.title = caption("", title_cls)
        self.image = image_widget(width, cls)
        self.bar = image_widget(width, "cqa-colour-bar")
        self.legend = caption("", "cqa-map-scale")
        self.legend.layout.width = f"{width}px"
        self.scale: MapScale | None = None
        self.widget = W.VBox([self.title, self.image, self.bar, self.legend])

    def show(self, picture: np.ndarray, scale: MapScale | None) -> None:
        """Show ``picture`` (RGB uint8) drawn on ``scale``; None: a bare photo, no bar."""
        self.scale = scale
        self.image.value = png(picture, self.width)
        self.bar.layout.display = None if scale else "none"
        if scale is not None:
            self.bar.value = png(bar(scale, self.width, count=5 if self.width >= 160 else 3))
        self.legend.value = (f"<div style='{READING_STYLE}'>{escape(legend(scale))}</div>"
                             if scale else "")


def bar_figure(title: str, n: int, height: int = 220, names: tuple[str, ...] = ("value",), width: int = 420,
               yrange: tuple[float, float] | None = None):
    """A FigureWidget with one bar trace per name over ``n`` branches.

    Width (and, for bounded numbers, the y range) is fixed: a figure first drawn in a hidden tab
    has no size to autoscale against.
    """
    x = [f"branch {i}" for i in range(n)]
    fig = figure_widget(
        data=[go.Bar(x=x, y=[0.0] * n, name=nm, text=[""] * n, textposition="auto") for nm in names],
        layout=go.Layout(title=title, height=height, width=width, margin=dict(l=30, r=10, t=40, b=30),
                         barmode="group", showlegend=len(names) > 1,
                         yaxis=dict(range=list(yrange)) if yrange else dict(autorange=True)),
    )
    return fig


def diverging_colourscale(steps: int = 11) -> list[list]:
    """The maps' diverging colormap (``maprender.DIVERGING``) as a plotly colour scale: blue < 0, red > 0."""
    scale = MapScale("chart", PER_MAP, -1.0, 1.0, True, "")
    rgb = colour(np.linspace(-1.0, 1.0, steps)[None], scale)[0]  # (steps, 3) uint8
    return [[i / (steps - 1), f"rgb({r},{g},{b})"] for i, (r, g, b) in enumerate(rgb.tolist())]


def heatmap_figure(title: str, n: int, height: int = 260, labels: list[str] | None = None,
                   zmin: float | None = None, zmax: float | None = None, fmt: str = ".2f",
                   z: np.ndarray | None = None, signed: bool = False, unit: str = ""):
    """A FigureWidget holding one n x n heatmap (``z``, else zeros), each cell annotated with its value (d3 ``fmt``).

    ``signed``: a diverging colour scale centred on zero (red > 0, blue < 0, as the maps); ``unit``:
    a colour bar titled with it (none without a unit).
    """
    labels = labels or [f"b{i}" for i in range(n)]
    z = [[0.0] * n for _ in range(n)] if z is None else np.asarray(z, dtype=float).tolist()
    colours = dict(colorscale=diverging_colourscale(), zmid=0.0) if signed else dict(colorscale="Viridis")
    fig = figure_widget(
        data=[go.Heatmap(z=z, x=labels, y=labels, zmin=zmin, zmax=zmax, texttemplate="%{z:" + fmt + "}",
                         showscale=bool(unit), colorbar=dict(title=dict(text=unit, side="right"), thickness=10),
                         **colours)],
        layout=go.Layout(title=title, height=height, width=height + (110 if unit else 40),
                         margin=dict(l=40, r=10, t=40, b=30), yaxis=dict(autorange="reversed")),
    )
    return fig


def draw_heatmap(box: W.Box, fig, matrix: np.ndarray, title: str, **figure_kw):
    """Show ``matrix`` in ``box``; returns the figure (pass it back on the next call).

    The first call builds the figure holding ``matrix`` and puts it in ``box``; later calls update
    it in place. A FigureWidget sends its data to the page only when it is built: an in-place
    update made before the page connects (Voila runs the first selection in the kernel before the
    browser attaches) never reaches it, so a figure built empty and filled then stays all zeros.
    """
    if fig is None:
        fig = heatmap_figure(title, len(matrix), z=matrix, **figure_kw)
        box.children = [fig]
    else:
        set_heatmap(fig, matrix, title)
    return fig


def set_bars(fig, values_per_trace: list[np.ndarray]) -> None:
    """Update bar heights and their labels in place."""
    with fig.batch_update():
        for trace, values in zip(fig.data, values_per_trace, strict=False):
            v = [float(x) for x in values]
            trace.y = v
            trace.text = [f"{x:.2f}" for x in v]


def set_heatmap(fig, matrix: np.ndarray, title: str | None = None) -> None:
    """Update a heatmap's values (and title) in place."""
    with fig.batch_update():
        fig.data[0].z = np.asarray(matrix, dtype=float).tolist()
        if title is not None:
            fig.layout.title.text = title


def _viridis(t: float) -> str:
    """A viridis-like colour for t in [0, 1] (five anchors, linear in between)."""
    anchors = [(68, 1, 84), (59, 82, 139), (33, 145, 140), (94, 201, 98), (253, 231, 37)]
    t = min(max(t, 0.0), 1.0) * (len(anchors) - 1)
    i = min(int(t), len(anchors) - 2)
    f = t - i
    r, g, b = (round(a + f * (c - a)) for a, c in zip(anchors[i], anchors[i + 1], strict=True))
    return f"rgb({r},{g},{b})"


def html_heatmap(matrix: np.ndarray, title: str, labels: list[str] | None = None, fmt: str = "{:.2g}",
                 cls: str = "cqa-html-heatmap") -> str:
    """An n x n matrix as an HTML table of coloured, numbered cells (no plotly: cheap to draw).

    Used where a small matrix is on the first page a viewer sees: a plotly figure needs plotly's
    ~5 MB front end loaded and run first (once per page under ``cqa workbench``, once per figure
    elsewhere: ``workbench.views.figures``).
    """
    m = np.asarray(matrix, dtype=float)
    labels = labels or [f"b{i}" for i in range(m.shape[0])]
    lo, hi = float(np.nanmin(m)), float(np.nanmax(m))
    span = hi - lo if hi > lo else 1.0
    head = "".join(f"<th style='padding:2px 6px'>{escape(x)}</th>" for x in labels)
    rows = []
    for i, row in enumerate(m):
        cells = []
        for v in row:
            t = (v - lo) / span
            colour = "#000" if t > 0.6 else "#fff"
            cells.append(f"<td class='cqa-cell' style='background:{_viridis(t)};color:{colour};padding:4px 8px;"
                         f"text-align:center'>{escape(fmt.format(v))}</td>")
        rows.append(f"<tr><th style='padding:2px 6px'>{escape(labels[i])}</th>{''.join(cells)}</tr>")
    return (f"<div class='{cls}'><div style='font-weight:bold;margin:4px 0'>{escape(title)}</div>"
            f"<table style='border-collapse:collapse;font-size:12px'><tr><th></th>{head}</tr>{''.join(rows)}</table></div>")

