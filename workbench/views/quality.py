"""QualityPanel: QAN quality bars, the relation matrix A, the gallery's lowest-quality branches, and
(accordion) the EDC curves and a dataset audit browser."""

from __future__ import annotations

import html
import os
from collections.abc import Callable

import ipywidgets as W

from workbench.session import Face, Session
from workbench.views.audit import AuditBrowser
from workbench.views.common import (
    Messages,
    bar_figure,
    branch_scan,
    caption,
    heatmap_figure,
    image_widget,
    overlay_on,
    plain_note,
    png,
    set_bars,
    set_heatmap,
)
from workbench.views.edc import EDCPanel


class QualityPanel:
    """Quality scores S_hat_i of the face, A, and the k gallery faces with the lowest branch quality."""

    def __init__(self, session: Session, messages: Messages, gallery: Callable[[], list[Face]] | None = None,
                 k: int = 6, edc_results: str | os.PathLike | None = None) -> None:
        self.session, self.messages, self.k = session, messages, k
        self.gallery = gallery or (lambda: [])
        b = session.branches
        self.bars = bar_figure("quality S_hat_i (Eq. 6)", b, height=260, yrange=(0.0, 1.1))
        self.values = caption("", "cqa-quality-values")
        self.relation = heatmap_figure("relation A (Eq. 4)", b, fmt=".2g")
        self.branch = W.Dropdown(options=[(f"branch {i}", i) for i in range(b)], value=0, description="lowest on")
        self.scan = W.Button(description="scan gallery")
        self.scan.add_class("cqa-quality-scan")
        self.lowest = [image_widget(96, "cqa-quality-lowest") for _ in range(k)]
        for im in self.lowest:
            im.layout.visibility = "hidden"  # no broken-image icons before the first scan
        self.lowest_titles = [caption("", "cqa-quality-lowest-title") for _ in range(k)]
        boxes = []
        for fig, cls in ((self.bars, "cqa-quality-bars"), (self.relation, "cqa-quality-relation")):
            box = W.Box([fig])
            box.add_class(cls)
            boxes.append(box)
        self.widget = W.VBox([
            self.values, W.HBox(boxes), W.HBox([self.branch, self.scan]),
            W.HBox([W.VBox([t, im]) for t, im in zip(self.lowest_titles, self.lowest, strict=True)]),
            W.Accordion([EDCPanel(messages, edc_results).widget, AuditBrowser(messages).widget],
                        titles=("quality as a FIQA score: EDC on LFW", "dataset audit: lowest-quality faces")),
        ])
        self.widget.add_class("cqa-quality-tab")
        self.scan.on_click(messages.guard(lambda _: self.scan_gallery()))

    def show(self, face: Face, other: Face | None = None) -> None:
        fa = self.session.analyse(face)
        br = fa.branches
        if br is None:
            self.values.value = html.escape(
                plain_note(self.session, "QAN quality") + f"; its quality reading is the embedding norm, "
                f"{fa.embedding_norm:.2f} for {face.name}")
            return
        set_bars(self.bars, [br.quality])
        set_heatmap(self.relation, br.relation)
        self.values.value = f"<b>{html.escape(face.name)}</b>: " + " &nbsp; ".join(
            f"branch {i} q=<span class='cqa-q'>{q:.3f}</span>" for i, q in enumerate(br.quality))

    def scan_gallery(self) -> None:
        """Score every gallery face (one batched call, cached) and show the k lowest on the chosen branch."""
        faces = branch_scan(self.session, self.gallery(), "the scan ranks faces by branch quality")
        i = int(self.branch.value)
        scored = sorted(((float(s.quality[i]), f) for s, f in zip(self.session.summaries(faces), faces, strict=True)),
                        key=lambda t: t[0])
        for slot, (title, image) in enumerate(zip(self.lowest_titles, self.lowest, strict=True)):
            if slot < len(scored):
                q, f = scored[slot]
                fa = self.session.analyse(f)
                title.value = f"{html.escape(f.name)}<br>q{i}={q:.3f}"
                image.value = png(overlay_on(fa, fa.branches.attention[i], 0.4), 96)
                image.layout.visibility = "visible"
            else:
                title.value, image.layout.visibility = "", "hidden"
