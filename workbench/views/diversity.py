"""DiversityPanel: how different the b attention maps are (CAL, Eq. 2), per face and over a dataset."""

from __future__ import annotations

from collections.abc import Callable

import ipywidgets as W
import plotly.graph_objects as go

from workbench.session import Face, Session
from workbench.views.common import (
    Messages,
    branch_scan,
    caption,
    draw_heatmap,
    heatmap_figure,
    plain_note,
    set_heatmap,
    show_parts,
)
from workbench.views.figures import figure_widget
from workbench.views.markup import escape
from workbench.views.markup import html as html_of

NO_OTHER = "no second checkpoint loaded: type its path below and press load"


class DiversityPanel:
    """CAL Gaussian-similarity matrix of the face, a dataset histogram, and a second checkpoint."""

    def __init__(self, session: Session, messages: Messages, gallery: Callable[[], list[Face]] | None = None) -> None:
        self.session, self.messages = session, messages
        self.gallery = gallery or (lambda: [])
        self.face: Face | None = None
        b = session.branches
        self.matrix = heatmap_figure("this model: map similarity (Eq. 2)", b, zmin=0, zmax=1)
        self.matrix_other = None  # built when a checkpoint is loaded: no zero matrix stands in for it
        self.hist = figure_widget(data=[go.Histogram(x=[], nbinsx=20)],
                                    layout=go.Layout(title="CAL penalty over the gallery", height=280, width=380,
                                                     xaxis=dict(title="CAL penalty of a face (0 = diverse)"),
                                                     yaxis=dict(title="faces"), margin=dict(l=50, r=10, t=40, b=45)))
        self.summary = caption("", "cqa-diversity-summary")
        self.scan = W.Button(description="histogram over gallery", icon="bar-chart", layout=W.Layout(width="220px"))
        self.scan.add_class("cqa-diversity-scan")
        self.other_path = W.Text(placeholder="path/to/other.safetensors", description="compare")
        self.other_path.add_class("cqa-other-checkpoint")
        self.compare = W.Button(description="load")
        no_other = caption(NO_OTHER, "cqa-no-other")
        no_other.layout.margin = "36px 0 0 16px"
        self.other_box = W.Box([no_other])
        self.other_box.add_class("cqa-diversity-other")
        boxes = []
        for fig, cls in ((self.matrix, "cqa-diversity-matrix"), (self.hist, "cqa-diversity-hist")):
            box = W.Box([fig])
            box.add_class(cls)
            boxes.append(box)
        self.hist_box = boxes[1]
        self.hist_box.children = ()  # drawn when scanned: no empty plot stands in for it
        # drawn only for a model with branches: a plain one's tab keeps nothing from the model before it
        self.branch_parts = [W.HBox([boxes[0], self.other_box]), W.HBox([self.other_path, self.compare]),
                             self.scan, boxes[1]]
        self.model: str | None = None  # the model the histogram was scanned with
        self.widget = W.VBox([self.summary, *self.branch_parts])
        self.widget.add_class("cqa-diversity-tab")
        self.scan.on_click(messages.guard(lambda _: self.histogram()))
        self.compare.on_click(messages.guard(lambda _: self.refresh_other()))

    def show(self, face: Face, other: Face | None = None) -> None:
        self.face = face
        if self.model != self.session.current:  # another model: the old histogram is not this model's
            self.model = self.session.current
            self.hist_box.children = ()
            self.hist.data[0].x = []
        br = self.session.analyse(face).branches
        show_parts(self.branch_parts, br is not None)
        if br is None:
            self.summary.value = escape(plain_note(self.session, "CAL diversity compares branch attention maps"))
            return
        set_heatmap(self.matrix, br.gaussian)
        self.summary.value = html_of("<b>{}</b>: CAL penalty {:.3f} (0 = diverse), mean top-20% IoU {:.2f} "
                                     "(branch pairs; 0 = no overlap), entropy {}", face.name, br.cal, br.mean_iou,
                                     ", ".join(f"{e:.2f}" for e in br.entropy))
        if self.other_path.value.strip():
            self.refresh_other()

    def refresh_other(self) -> None:
        """Load the second checkpoint (cached) and show its matrix for the same face."""
        path = self.other_path.value.strip()
        if not path or self.face is None:
            raise ValueError("type a checkpoint path and select a face first")
        model = self.session.load_other(path)
        br = self.session.analyse(self.face, model=model).branches
        if br is None:
            raise ValueError(plain_note(self.session, "CAL diversity compares branch attention maps", model))
        self.matrix_other = draw_heatmap(self.other_box, self.matrix_other, br.gaussian,
                                         f"{path.split('/')[-1]}: CAL {br.cal:.3f}", zmin=0, zmax=1)

    def histogram(self) -> None:
        """Per-face CAL over the gallery (cached per face)."""
        faces = branch_scan(self.session, self.gallery(), "the CAL histogram compares branch attention maps")
        values = self.session.dataset_diversity(faces)
        with self.hist.batch_update():
            self.hist.data[0].x = values
            self.hist.layout.title.text = f"CAL penalty over {len(values)} gallery faces"
        self.hist_box.children = (self.hist,)
