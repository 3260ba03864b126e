"""The Benchmark tab's face map: a run's faces placed by UMAP of their embeddings, coloured by choice.

Computed once per run in a background thread (``runs.embmap.embedding_map``, kept in the run folder
as ``map.npz``; umap-learn needs numba, not torch) and drawn with WebGL. Colour by identity, by
quality or by the number of the run's errors a face is in; a click opens the face in the Face tab.
"""

from __future__ import annotations

import threading
import zlib
from collections.abc import Callable
from typing import Any

import ipywidgets as W
import numpy as np
import plotly.graph_objects as go

from cqa_core.evaluation.runs.browse import face_errors, faces_rows
from cqa_core.evaluation.runs.embmap import MAP_FILE, embedding_map
from cqa_core.evaluation.runs.store import Run
from cqa_core.evaluation.runs.tables import RunTables
from workbench.views.common import Messages
from workbench.views.figures import figure_widget

COLOURS = ("identity", "quality", "errors")


class FaceMap:
    """A button that computes (once) and draws the run's face map."""

    def __init__(self, messages: Messages, open_face: Callable[[dict[str, Any]], None]) -> None:
        self.messages, self.open_face = messages, open_face
        self.run: Run | None = None
        self.tables: RunTables | None = None
        self.rows: dict[str, Any] = {}
        self.button = W.Button(description="draw the face map", layout=W.Layout(width="200px"))
        self.button.add_class("cqa-bench-map-button")
        self.colour = W.ToggleButtons(options=COLOURS, value="errors", description="colour")
        self.note = W.HTML("")
        self.fig = figure_widget(layout=go.Layout(title="faces (UMAP of the embeddings; click: open the face)",
                                                    height=480, width=620, margin=dict(l=30, r=10, t=40, b=30)))
        self.button.on_click(messages.guard(lambda _: self.start()))
        self.colour.observe(messages.guard(lambda _: self.draw()), names="value")
        self.widget = W.VBox([W.HTML("<h4>face map</h4>"), W.HBox([self.button, self.colour]), self.note, self.fig])
        self.widget.add_class("cqa-bench-map")

    def show_run(self, run: Run, tables: RunTables) -> None:
        """A new run: drawn at once when its map is cached, else on the button."""
        self.run, self.tables, self.rows = run, tables, {}
        with self.fig.batch_update():
            self.fig.data = []
        cached = (run.folder / MAP_FILE).is_file()
        self.note.value = "" if cached else "computed once per run (UMAP: tens of seconds), then kept in the run folder"
        if cached:
            self.compute()

    def start(self) -> None:
        """Compute in the background (the page keeps answering) and draw when done."""
        self.note.value = "computing the face map..."
        threading.Thread(target=self.messages.guard(self.compute), daemon=True).start()

    def compute(self) -> None:
        """The run's map (cached) and the faces' rows, then draw."""
        m = embedding_map(self.run)
        rows = faces_rows(self.tables, m["face_id"])
        rows["errors"] = face_errors(self.tables, m["face_id"])
        self.rows = {**m, **rows}
        self.note.value = f"{len(m['face_id'])} faces"
        self.draw()

    def draw(self) -> None:
        """Redraw with the chosen colour."""
        if not self.rows:
            return
        r, how = self.rows, self.colour.value
        if how == "identity":
            colour = [zlib.crc32(str(i).encode()) % 360 for i in r["identity"]]
            marker = dict(size=6, color=colour, colorscale="HSV", showscale=False)
        else:
            values = np.asarray(r["quality"] if how == "quality" else r["errors"], np.float64)
            marker = dict(size=6, color=values, colorscale="Viridis" if how == "quality" else "Reds", showscale=True,
                          colorbar=dict(title="quality" if how == "quality" else "errors"))
        text = [f"{i} q={q:.2f} errors={e}" for i, q, e in zip(r["identity"], r["quality"], r["errors"], strict=True)]
        with self.fig.batch_update():
            self.fig.data = []
            self.fig.add_trace(go.Scattergl(x=r["x"], y=r["y"], mode="markers", marker=marker, text=text,
                                            hoverinfo="text", customdata=np.arange(len(r["x"]))))
        self.fig.data[0].on_click(self.messages.guard(self._on_point))

    def face(self, k: int) -> dict[str, Any]:
        """Face ``k`` of the map as a row (path, identity, quality, alignment)."""
        return {c: self.rows[c][k] for c in ("face_id", "path", "identity", "quality", "alignment")}

    def _on_point(self, _trace, points, _selector) -> None:
        if points.point_inds:
            self.open_face(self.face(int(points.point_inds[0])))
