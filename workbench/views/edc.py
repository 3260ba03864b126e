"""EDCPanel: error-versus-discard curves of QAN quality, the embedding norm and random discarding.

It reads precomputed ``cqa eval --protocol edc --json`` results (``edc_*.json``; by default
``Settings.edc_results``: the repository's ``docs/results``, or env ``CQA_EDC_RESULTS``) and
computes nothing.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import ipywidgets as W
import plotly.graph_objects as go

from cqa_core.settings import Settings
from workbench.views.common import Messages, caption
from workbench.views.figures import figure_widget
from workbench.views.markup import escape

COLOURS = {"qan": "#1f77b4", "norm": "#ff7f0e", "random": "#7f7f7f"}
LABELS = {"qan": "QAN overall quality", "norm": "embedding norm", "random": "random"}


def load_edc_results(folder: str | os.PathLike) -> dict[str, dict]:
    """``edc_*.json`` files in ``folder`` -> {"lfw verify": result, ...} (file-name order)."""
    out = {}
    for path in sorted(Path(folder).glob("edc_*.json")):
        res = json.loads(path.read_text())
        if res.get("protocol") == "edc":
            out[f"{res.get('data', '?')} {res.get('edc_pairs', '?')}"] = res
    return out


def edc_figure(result: dict, fmr: str):
    """A plotly FigureWidget: FNMR vs discarded fraction, one line per reading, at one FMR."""
    fig = figure_widget(layout=go.Layout(
        height=300, width=520, margin=dict(l=50, r=10, t=40, b=40), xaxis=dict(title="fraction of mated pairs discarded"),
        yaxis=dict(title="FNMR", rangemode="tozero"), legend=dict(orientation="h", y=-0.25)))
    for name in COLOURS:
        fig.add_scatter(x=[], y=[], mode="lines", name=LABELS[name], line=dict(color=COLOURS[name]))
    set_edc(fig, result, fmr)
    return fig


def set_edc(fig, result: dict, fmr: str) -> None:
    """Show ``result``'s curves at ``fmr`` in a figure made by :func:`edc_figure` (in place)."""
    row = result["fmr"][fmr]
    with fig.batch_update():
        for trace, name in zip(fig.data, COLOURS, strict=True):
            trace.x, trace.y = result["fractions"], row["curves"][name]["fnmr"]
        fig.layout.title.text = f"EDC, {result.get('data')} {result.get('edc_pairs')}, FMR = {fmr}"
        fig.layout.shapes = [dict(type="line", x0=result["max_discard"], x1=result["max_discard"], y0=0, y1=1,
                                  yref="paper", line=dict(dash="dot", color="#999"))]


def area_text(result: dict, fmr: str) -> str:
    """One HTML line: each reading's EDC area (lower = better) and FNMR before discarding."""
    row = result["fmr"][fmr]
    parts = []
    for name in COLOURS:
        c = row["curves"][name]
        std = f" &plusmn; {c['area_std']:.4f}" if "area_std" in c else ""
        parts.append(f"{LABELS[name]} <b class='cqa-edc-area'>{c['area']:.4f}</b>{std}")
    k = round(100 * result["max_discard"])
    return (f"area under FNMR, 0-{k}% discarded (lower = better): " + " &nbsp; ".join(parts)
            + f" &nbsp; | FNMR before discarding {100 * row['fnmr_at_0']:.1f}% "
            f"({result['n_mated']} mated / {result['n_impostor']} impostor pairs)")


class EDCPanel:
    """Pair set and FMR pickers, the EDC figure and the areas; a note when no results exist."""

    def __init__(self, messages: Messages | None = None, folder: str | os.PathLike | None = None) -> None:
        guard = messages.guard if messages else (lambda fn: fn)
        self.folder = Path(folder) if folder else Settings().edc_results  # the dashboard passes its settings'
        self.results = load_edc_results(self.folder) if self.folder.is_dir() else {}
        self.areas = caption("", "cqa-edc-areas")
        if not self.results:
            self.areas.value = escape(f"no EDC results in {self.folder}: run `cqa eval --protocol edc --json "
                                           f"{self.folder}/edc_lfw_verify.json` (see docs/benchmarks.md)")
            self.widget = W.VBox([self.areas])
            self.widget.add_class("cqa-edc")
            return
        first = next(iter(self.results.values()))
        self.pairs = W.Dropdown(options=list(self.results), description="pairs")
        self.fmr = W.Dropdown(options=list(first["fmr"]), description="FMR")
        self.figure = edc_figure(first, self.fmr.value)
        self.pairs.observe(guard(lambda _: self.update()), names="value")
        self.fmr.observe(guard(lambda _: self.update()), names="value")
        self.widget = W.VBox([W.HBox([self.pairs, self.fmr]), self.figure, self.areas])
        self.widget.add_class("cqa-edc")
        self.update()

    def update(self) -> None:
        result = self.results[self.pairs.value]
        set_edc(self.figure, result, self.fmr.value)
        self.areas.value = area_text(result, self.fmr.value)
