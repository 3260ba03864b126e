"""The Benchmark tab: the runs of ``cqa eval --out`` under the runs folder, and every error one click from its maps.

Pick a run: its ROC and DET curves (FAR on a log axis), genuine and impostor score histograms with
the threshold, accuracy by quality decile, by edited side (masks) and by alignment, and the error
table (``views.runtable``). Pick a second run of the same pairs: ``views.runcompare`` adds the
score-against-score scatter, McNemar's test and the disagreement lists. ``views.runmap`` draws the
faces' UMAP. Every number comes from DuckDB queries on the run's Parquet tables
(``cqa_core.evaluation.runs``); nothing here holds a model.

Opening a pair calls ``open_pair(face_a, face_b, model, beside)`` (``Workbench.open_pair``): the
Pair tab shows the two photos under the run's recognizer (``run_model``), aligned as the run
aligned them.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import ipywidgets as W
import plotly.graph_objects as go

from cqa_core.evaluation.runs.browse import accuracy_by_alignment, error_rates, runs_in, score_bins
from cqa_core.evaluation.runs.calibration import read_calibration
from cqa_core.evaluation.runs.store import Run
from cqa_core.evaluation.runs.tables import RunTables
from cqa_core.settings import AlignMode
from workbench.gallery import gallery_align
from workbench.views.common import Messages
from workbench.views.figures import figure_widget
from workbench.views.markup import escape
from workbench.views.runcompare import CompareSection
from workbench.views.runmap import FaceMap
from workbench.views.runstart import RunStarter
from workbench.views.runtable import ErrorTable
from workbench.wire import Face

OpenPair = Callable[[Face, "Face | None", "str | None", "str | None"], None]
NONE = ""


def run_model(meta: dict[str, Any]) -> str:
    """The dashboard's model spec of a run's recognizer: "dlib", "default" (the served CQA-Face), or its file."""
    model = meta.get("model", {})
    if model.get("kind") == "dlib":
        return "dlib"
    return model.get("source") or "default"


def run_face(path: str, align: str) -> Face:
    """A run's face as the dashboard opens it: the photo, aligned as the run aligned it."""
    mode = AlignMode(align) if align in {m.value for m in AlignMode} else gallery_align(path)
    return Face(Path(path).stem.replace("_", " "), path, mode)


def _figure(title: str, xtitle: str, ytitle: str, xlog: bool = False, ylog: bool = False, width: int = 380):
    return figure_widget(layout=go.Layout(
        title=title, height=300, width=width, margin=dict(l=50, r=10, t=40, b=40), showlegend=False,
        xaxis=dict(title=xtitle, type="log" if xlog else "linear"), yaxis=dict(title=ytitle, type="log" if ylog else "linear")))


class BenchmarkPanel:
    """The Benchmark tab (see the module docstring)."""

    def __init__(self, messages: Messages, runs_dir: Path, open_pair: OpenPair, session: Any = None) -> None:
        """``session``: the viewer's, for starting runs in its analysis service (None: no "start a run" box)."""
        self.messages, self.runs_dir, self.open_pair = messages, Path(runs_dir), open_pair
        self.run: Run | None = None
        self.tables: RunTables | None = None
        guard = messages.guard
        self.picker = W.Dropdown(description="run", layout=W.Layout(width="520px"))
        self.picker.add_class("cqa-bench-run")
        self.other = W.Dropdown(description="compare", layout=W.Layout(width="520px"))
        self.other.add_class("cqa-bench-other")
        self.reload = W.Button(description="rescan runs")
        self.summary = W.HTML("")
        self.summary.add_class("cqa-bench-summary")
        self.picker.observe(guard(lambda _: self.pick()), names="value")
        self.other.observe(guard(lambda _: self.pick_other()), names="value")
        self.reload.on_click(guard(lambda _: self.scan()))
        self.starter = RunStarter(session, messages, self._run_done) if session is not None else None
        # a run's charts are made when the first run is shown (_charts): with no run, the browser loads
        # no plot or grid (seven empty Plotly charts and a data grid took it seconds to set up)
        self.body = W.VBox([])
        self.widget = W.VBox([W.HBox([self.picker, self.reload]), self.other, self.summary, self.body,
                              *([self.starter.widget] if self.starter else [])])
        self.widget.add_class("cqa-benchmark-tab")
        self._scanned = False

    def _charts(self) -> None:
        """Make the run's charts, error table, comparison and face map, and put them in the page (once)."""
        self.roc = _figure("ROC", "false accept rate", "true accept rate", xlog=True)
        self.det = _figure("DET", "false accept rate", "false reject rate", xlog=True, ylog=True)
        self.hist = _figure("scores", "cosine", "share of pairs", width=420)
        self.hist.update_layout(showlegend=True, barmode="overlay", legend=dict(x=0, y=1))
        self.reliability = _figure("reliability", "calibrated P(same person)", "fraction same person", width=380)
        self.reliability.layout.xaxis.range = self.reliability.layout.yaxis.range = [0, 1]
        self.by = {k: _figure(t, x, "accuracy", width=380) for k, t, x in (
            ("quality_decile", "accuracy by quality decile", "decile of the pair's lower quality"),
            ("edited_side", "accuracy by edited side", "faces edited (mask / degradation)"),
            ("alignment", "accuracy by alignment", "alignment of the two faces"))}
        for fig in self.by.values():  # the values are labels: a first empty draw would leave the axis linear
            fig.layout.xaxis.type = "category"
        self.table = ErrorTable(self._open_row, self.messages.guard)
        self.compare = CompareSection(self.messages, self._open_compared)
        self.map = FaceMap(self.messages, self._open_face)
        wrap = W.Layout(flex_flow="row wrap")  # a narrow window puts charts on the next line rather than squeezing them
        curves = W.HBox([self.roc, self.det, self.hist, self.reliability], layout=wrap)
        accuracy = W.HBox(list(self.by.values()), layout=wrap)
        self.body.children = (curves, accuracy, W.HTML("<h4>errors</h4>"), self.table.widget, self.compare.widget,
                              self.map.widget)

    def show(self, face: Face | None = None, other: Face | None = None) -> None:
        """The dashboard's face selection does not change a run: list the runs once, on first view."""
        if not self._scanned:
            self.scan()

    def scan(self) -> None:
        """List the run folders (newest first) and show the first."""
        self._scanned = True
        found = runs_in(self.runs_dir)
        options = [(f"{p.name}  ({Run(p).label})", str(p)) for p in found]
        if not options:
            self.summary.value = (f"no runs in {escape(str(self.runs_dir))}: write one with "
                                  f"<code>cqa eval --out {escape(str(self.runs_dir))}/NAME</code>")
            return
        keep = self.picker.value if self.picker.value in [v for _, v in options] else options[0][1]
        self.picker.options = options
        other = self.other.value
        self.other.options = [("no second run", NONE), *options]
        self.other.value = other if other in [v for _, v in options] else NONE  # new options leave no choice shown
        self.picker.value = keep
        if self.run is None or str(self.run.folder) != keep:
            self.pick()

    def _run_done(self, folder: str) -> None:
        """A run started here is written: list it and show it."""
        self.scan()
        if folder in [v for _, v in self.picker.options]:
            self.pick(folder)
            self.messages.info(f"the run {Path(folder).name} is written and shown")
        else:  # a service on another machine wrote it there
            self.messages.info(f"the run is written to {folder} on the analysis service's machine: copy it into "
                               f"{self.runs_dir} to browse it here")

    def pick(self, folder: str | None = None) -> None:
        """Show a run (its folder; default the picker's)."""
        if folder is not None and folder != self.picker.value:
            self.picker.value = folder  # observed: comes back here
            return
        if not self.picker.value:
            return
        self.run = Run(self.picker.value)
        self.tables = RunTables(self.run)
        if not self.body.children:
            self._charts()
        self._summary()
        self._curves()
        self._reliability()
        self._accuracy()
        self.table.show_run(self.tables)
        self.map.show_run(self.run, self.tables)
        self.pick_other()

    def pick_other(self) -> None:
        """Compare with the second run picked (or hide the comparison)."""
        other = self.other.value
        if not self.body.children:  # no run shown yet: nothing to compare
            return
        if self.run is None or not other or other == str(self.run.folder):
            self.compare.hide()
            return
        self.compare.show(self.run, self.tables, Run(other))

    def _summary(self) -> None:
        m = self.run.meta
        model = m.get("model", {})
        self.summary.value = (
            f"<b class='cqa-bench-label'>{escape(self.run.label)}</b>: accuracy "
            f"<b class='cqa-bench-accuracy'>{100 * float(m['accuracy']):.2f}%</b> over {m.get('n_pairs')} pairs "
            f"({m.get('n_same')} same), {m.get('n_faces')} faces; quality = {escape(str(m.get('quality_kind')))}; "
            f"model {escape(str(model.get('name')))} ({escape(str(model.get('kind')))}, weights "
            f"{escape(str(model.get('digest')))}); {escape(str(m.get('date', '')))}")

    def _curves(self) -> None:
        b = score_bins(self.tables, bins=400)  # the curves' resolution
        far, frr, tar, _ = error_rates(b)
        keep = far > 0
        h = score_bins(self.tables, bins=min(100, max(20, int(self.run.meta.get("n_pairs") or 0) // 10)))
        centres = (h.edges[:-1] + h.edges[1:]) / 2
        with self.roc.batch_update():
            self.roc.data = []
            self.roc.add_scatter(x=far[keep], y=tar[keep], mode="lines", name="ROC")
        with self.det.batch_update():
            self.det.data = []
            both = keep & (frr > 0)
            self.det.add_scatter(x=far[both], y=frr[both], mode="lines", name="DET")
        with self.hist.batch_update():
            self.hist.data = []
            for counts, name, colour in ((h.genuine, "genuine", "#1b7f3b"), (h.impostor, "impostor", "#b00020")):
                self.hist.add_bar(x=centres, y=counts / max(int(counts.sum()), 1), name=name, marker_color=colour,
                                  opacity=0.6)
            self.hist.layout.shapes = [dict(type="line", x0=b.threshold, x1=b.threshold, y0=0, y1=1, yref="paper",
                                            line=dict(color="black", dash="dash"))]
            self.hist.layout.title = f"scores; threshold {b.threshold:.3f} (mean of the folds')"

    def _reliability(self) -> None:
        """The run's calibration (saved by ``cqa eval --out``) on its held-out folds: a reliability diagram + ECE."""
        cal = read_calibration(self.run.folder)
        with self.reliability.batch_update():
            self.reliability.data = []
            if cal is None:
                self.reliability.layout.title = "reliability: this run has no saved calibration"
                return
            rows = [r for r in cal.reliability if r["count"]]
            self.reliability.add_scatter(x=[0, 1], y=[0, 1], mode="lines", name="perfect",
                                         line=dict(color="grey", dash="dash"))
            self.reliability.add_scatter(x=[r["mean_probability"] for r in rows], y=[r["fraction_same"] for r in rows],
                                         mode="lines+markers", name=cal.method,
                                         text=[f"{r['count']} pairs" for r in rows])
            self.reliability.layout.title = f"reliability (held-out folds): ECE {cal.ece:.3f}, {cal.method}"

    def _accuracy(self) -> None:
        groups = {"quality_decile": self.tables.accuracy_by("quality_decile"),
                  "edited_side": self.tables.accuracy_by("edited_side"), "alignment": accuracy_by_alignment(self.tables)}
        for key, rows in groups.items():
            fig = self.by[key]
            with fig.batch_update():
                fig.data = []
                fig.add_bar(x=[str(r["value"]) for r in rows], y=[float(r["accuracy"]) for r in rows],
                            text=[f"{100 * float(r['accuracy']):.1f}% of {r['pairs']}" for r in rows],
                            textposition="auto", marker_color="#3b6ea5")
                fig.layout.yaxis.range = [min([float(r["accuracy"]) for r in rows] + [0.5]) - 0.05, 1.02]

    # ---- opening pairs and faces -------------------------------------------------------------
    def _open_row(self, row: dict[str, Any]) -> None:
        self.open_pair(run_face(row["path1"], row["align1"]), run_face(row["path2"], row["align2"]),
                       run_model(self.run.meta), None)
        if row.get("edit", "none") != "none":
            self.messages.info(f"pair {row['pair_id']}: the run scored it with the edit {row['edit']}; the Pair "
                               "tab shows the two photos unedited")

    def _open_compared(self, row: dict[str, Any], other: Run) -> None:
        self.open_pair(run_face(row["path1"], row["align1"]), run_face(row["path2"], row["align2"]),
                       run_model(self.run.meta), run_model(other.meta))

    def _open_face(self, row: dict[str, Any]) -> None:
        self.open_pair(run_face(row["path"], row["alignment"]), None, run_model(self.run.meta), None)

    def pair_row(self, pair_id: int) -> dict[str, Any]:
        """A pair of the current run by id (every column)."""
        return self.tables.pair(int(pair_id))

