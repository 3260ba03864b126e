"""Two runs of the same pairs in the Benchmark tab: score A against score B, McNemar, the disagreements.

The scatter has one point per pair (WebGL, ``Scattergl``; runs over ``runs.browse.paired_scores``'s
limit are thinned evenly and say so), genuine and impostor pairs in two colours, each run's mean
threshold as a line. Clicking a point, or a row of either disagreement list, opens the pair under
both recognizers side by side (the Pair tab's "beside" model).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import ipywidgets as W
import pandas as pd
import plotly.graph_objects as go
from ipydatagrid import DataGrid

from cqa_core.evaluation.runs.browse import paired_scores
from cqa_core.evaluation.runs.compare import Comparison, compare_runs
from cqa_core.evaluation.runs.store import Run
from cqa_core.evaluation.runs.tables import RunTables
from workbench.views.common import Messages
from workbench.views.figures import figure_widget
from workbench.views.markup import escape

LISTED = 200
"""Rows shown of each disagreement list (worst margin first)."""
LIST_COLUMNS = ("pair_id", "same", "score_a", "score_b", "margin_a", "margin_b", "outcome_a", "outcome_b", "path1", "path2")


def mcnemar_html(c: Comparison) -> str:
    """The 2 x 2 table of right and wrong, and McNemar's exact p-value, as HTML (names escaped)."""
    t = c.table
    cell = "<td style='padding:2px 10px;text-align:right'>{}</td>"
    rows = (f"<tr><td></td><th>B right</th><th>B wrong</th></tr>"
            f"<tr><th>A right</th>{cell.format(t['both right'])}{cell.format(t['only A right'])}</tr>"
            f"<tr><th>A wrong</th>{cell.format(t['only B right'])}{cell.format(t['both wrong'])}</tr>")
    verdict = "the difference is more than noise (p < 0.05)" if c.p_value < 0.05 else "no significant difference"
    return (f"<div class='cqa-bench-mcnemar'><b>A</b> {escape(c.a)}: {100 * c.accuracy_a:.2f}% &nbsp; "
            f"<b>B</b> {escape(c.b)}: {100 * c.accuracy_b:.2f}%<table>{rows}</table>McNemar's exact test on the "
            f"{t['only A right'] + t['only B right']} disagreements: p = <b class='cqa-bench-p'>{c.p_value:.4g}</b> "
            f"({verdict})</div>")


class CompareSection:
    """Scatter, McNemar and disagreement lists of run A (the picked run) against run B."""

    def __init__(self, messages: Messages, open_compared: Callable[[dict[str, Any], Run], None]) -> None:
        self.messages, self.open_compared = messages, open_compared
        self.tables: RunTables | None = None
        self.other: Run | None = None
        self.lists: dict[str, list[dict[str, Any]]] = {}
        self.stats = W.HTML("")
        self.scatter = figure_widget(layout=go.Layout(
            title="score A against score B (click a point: the pair under both)", height=460, width=520,
            margin=dict(l=50, r=10, t=40, b=40), xaxis=dict(title="score A"), yaxis=dict(title="score B")))
        self.grids = {k: self._grid(k) for k in ("only A right", "only B right")}
        boxes = [W.VBox([W.HTML(f"<b>{k}</b> (the other's worst margin first)"), g]) for k, g in self.grids.items()]
        self.widget = W.VBox([W.HTML("<h4>two runs</h4>"), self.stats, self.scatter, W.HBox(boxes)])
        self.widget.add_class("cqa-bench-compare")
        self.widget.layout.display = "none"

    def _grid(self, key: str) -> DataGrid:
        grid = DataGrid(pd.DataFrame({c: [] for c in LIST_COLUMNS}), selection_mode="row", base_column_size=90,
                        layout=W.Layout(height="300px", width="560px"))
        grid.on_cell_click(self.messages.guard(lambda cell: self._on_list_click(key, cell)))
        return grid

    def hide(self) -> None:
        self.widget.layout.display = "none"

    def show(self, run: Run, tables: RunTables, other: Run) -> None:
        """Compare ``run`` (A, queried through ``tables``) with ``other`` (B): refused on other pair lists."""
        self.tables, self.other = tables, other
        c = compare_runs(run, other)
        self.stats.value = mcnemar_html(c)
        s = paired_scores(run, other)
        thinned = len(s["pair_id"]) < int(run.meta.get("n_pairs") or 0)
        ta = float(sum(run.meta["fold_thresholds"].values()) / len(run.meta["fold_thresholds"]))
        tb = float(sum(other.meta["fold_thresholds"].values()) / len(other.meta["fold_thresholds"]))
        with self.scatter.batch_update():
            self.scatter.data = []
            for same, name, colour in ((True, "same person", "#1b7f3b"), (False, "different people", "#b00020")):
                m = s["same"] == same
                self.scatter.add_trace(go.Scattergl(x=s["score_a"][m], y=s["score_b"][m], customdata=s["pair_id"][m],
                                                    mode="markers", name=name, marker=dict(size=5, color=colour,
                                                                                           opacity=0.6)))
            self.scatter.layout.shapes = [
                dict(type="line", x0=ta, x1=ta, y0=0, y1=1, yref="paper", line=dict(dash="dash", color="grey")),
                dict(type="line", y0=tb, y1=tb, x0=0, x1=1, xref="paper", line=dict(dash="dash", color="grey"))]
            self.scatter.layout.xaxis.title = f"score A: {run.label}"
            self.scatter.layout.yaxis.title = f"score B: {other.label}"
            self.scatter.layout.title = ("score A against score B" + (" (every k-th pair)" if thinned else "") +
                                         "; click a point: the pair under both")
        for trace in self.scatter.data:
            trace.on_click(self.messages.guard(self._on_point))
        self.lists = {"only A right": c.only_a_right[:LISTED], "only B right": c.only_b_right[:LISTED]}
        for key, rows in self.lists.items():
            df = pd.DataFrame({col: [r[col] for r in rows] for col in LIST_COLUMNS})
            self.grids[key].data = df.round(4)
        self.widget.layout.display = None

    def open_pair_id(self, pair_id: int) -> None:
        """Open a pair under both recognizers."""
        self.open_compared(self.tables.pair(int(pair_id)), self.other)

    def _on_point(self, trace, points, _selector) -> None:
        if points.point_inds:
            self.open_pair_id(int(trace.customdata[points.point_inds[0]]))

    def _on_list_click(self, key: str, cell: dict[str, Any]) -> None:
        if cell.get("region") == "body" and cell.get("primary_key_row") is not None:
            self.open_pair_id(int(self.lists[key][int(cell["primary_key_row"])]["pair_id"]))
