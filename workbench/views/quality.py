"""QualityPanel: QAN quality bars, the relation matrix A (with its reading), the gallery's lowest-quality
branches, and (accordion) the EDC curves and a dataset audit browser.

The lowest-quality thumbnails show branch i's attention of different faces, each on its own scale
("per map", stated under it with a colour bar): no two of them are a pair or one face's branches.
"""

from __future__ import annotations

import os
from collections.abc import Callable

import ipywidgets as W

from cqa_core.explain.maprender import PER_MAP
from cqa_core.explain.pictures import ATTENTION, RELATION_READING, branch_scales
from workbench.session import Face, Session
from workbench.views.audit import AuditBrowser
from workbench.views.common import (
    MapPicture,
    Messages,
    bar_figure,
    branch_scan,
    caption,
    heatmap_figure,
    overlay_on,
    plain_note,
    reading,
    set_bars,
    set_heatmap,
    show_parts,
)
from workbench.views.edc import EDCPanel
from workbench.views.markup import escape


class QualityPanel:
    """Quality scores S_hat_i of the face, A, and the k gallery faces with the lowest branch quality."""

    def __init__(self, session: Session, messages: Messages, gallery: Callable[[], list[Face]] | None = None,
                 k: int = 6, edc_results: str | os.PathLike | None = None) -> None:
        self.session, self.messages, self.k = session, messages, k
        self.gallery = gallery or (lambda: [])
        b = session.branches
        self.bars = bar_figure("quality S_hat_i (Eq. 6)", b, height=260, yrange=(0.0, 1.1))
        self.values = caption("", "cqa-quality-values")
        self.relation = heatmap_figure("relation A (Eq. 4)", b, fmt=".2g", unit="A[i, j] (unitless)")
        self.relation_reading = reading(RELATION_READING, "cqa-relation-reading", "360px")
        self.branch = W.Dropdown(options=[(f"branch {i}", i) for i in range(b)], value=0, description="lowest on")
        self.scan = W.Button(description="scan gallery")
        self.scan.add_class("cqa-quality-scan")
        self.thumbs = [MapPicture(120, "cqa-quality-lowest", "cqa-quality-lowest-title") for _ in range(k)]
        self.lowest = [p.image for p in self.thumbs]
        self.lowest_titles = [p.title for p in self.thumbs]
        for p in self.thumbs:
            p.widget.layout.visibility = "hidden"  # no broken-image icons before the first scan
        boxes = []
        for fig, cls in ((self.bars, "cqa-quality-bars"), (self.relation, "cqa-quality-relation")):
            box = W.Box([fig])
            box.add_class(cls)
            boxes.append(box)
        boxes[1].layout.flex_flow = "column"
        boxes[1].children = (self.relation, self.relation_reading)
        # drawn only for a model with branches: a plain one's tab keeps nothing from the model before it
        self.branch_parts = [W.HBox(boxes), W.HBox([self.branch, self.scan]), W.HBox([p.widget for p in self.thumbs])]
        self.model: str | None = None  # the model the lowest-quality scan was made with
        self.widget = W.VBox([
            self.values, *self.branch_parts,
            W.Accordion([EDCPanel(messages, edc_results).widget, AuditBrowser(messages).widget],
                        titles=("quality as a FIQA score: EDC on LFW", "dataset audit: lowest-quality faces")),
        ])
        self.widget.add_class("cqa-quality-tab")
        self.scan.on_click(messages.guard(lambda _: self.scan_gallery()))

    def show(self, face: Face, other: Face | None = None) -> None:
        fa = self.session.analyse(face)
        br = fa.branches
        if self.model != self.session.current:  # another model: the old scan is not this model's
            self.model = self.session.current
            for thumb in self.thumbs:
                thumb.title.value, thumb.widget.layout.visibility = "", "hidden"
        show_parts(self.branch_parts, br is not None)
        if br is None:
            self.values.value = escape(
                plain_note(self.session, "QAN quality") + f"; its quality reading is the embedding norm, "
                f"{fa.embedding_norm:.2f} for {face.name}")
            return
        set_bars(self.bars, [br.quality])
        set_heatmap(self.relation, br.relation)
        self.values.value = f"<b>{escape(face.name)}</b>: " + " &nbsp; ".join(
            f"branch {i} q=<span class='cqa-q'>{q:.3f}</span>" for i, q in enumerate(br.quality))

    def scan_gallery(self) -> None:
        """Score every gallery face (one batched call, cached) and show the k lowest on the chosen branch."""
        faces = branch_scan(self.session, self.gallery(), "the scan ranks faces by branch quality")
        i = int(self.branch.value)
        scored = sorted(((float(s.quality[i]), f) for s, f in zip(self.session.summaries(faces), faces, strict=True)),
                        key=lambda t: t[0])
        for slot, thumb in enumerate(self.thumbs):
            if slot < len(scored):
                q, f = scored[slot]
                br = self.session.analyse(f).branches
                scale = branch_scales(br.attention[i:i + 1], PER_MAP, ATTENTION)[0]
                thumb.title.value = f"{escape(f.name)}<br>q{i}={q:.3f}"
                thumb.show(overlay_on(self.session.analyse(f), br.attention[i], scale, 0.4,
                                      photo_map=br.attention_photo[i]), scale)
                thumb.widget.layout.visibility = "visible"
            else:
                thumb.title.value, thumb.widget.layout.visibility = "", "hidden"
