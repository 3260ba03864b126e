"""PairInspector: similarity and verdict, the branch-to-branch decomposition, leave-one-out, CAMs."""

from __future__ import annotations

import html

import ipywidgets as W

from workbench.session import SOURCE_METHODS, Face, Session
from workbench.views.common import (
    Messages,
    bar_figure,
    caption,
    heatmap_figure,
    image_widget,
    overlay_on,
    png,
    set_bars,
    set_heatmap,
)
from workbench.views.face import ig_text, unit

PAIR_SOURCES = ("similarity Grad-CAM", "integrated gradients", "occlusion")


class PairInspector:
    """Two faces: cos(e_a, e_b) against a threshold, and where the similarity comes from."""

    def __init__(self, session: Session, messages: Messages, size: int = 180) -> None:
        self.session, self.messages, self.size = session, messages, size
        self.face: Face | None = None
        self.other: Face | None = None
        b = session.branches
        self.threshold = W.FloatSlider(value=0.3, min=-1.0, max=1.0, step=0.01, description="threshold",
                                       continuous_update=False)
        self.threshold.add_class("cqa-threshold")
        self.verdict = caption("pick a second face on the left", "cqa-pair-verdict")
        self.source = W.ToggleButtons(options=PAIR_SOURCES, value=PAIR_SOURCES[0], description="map")
        self.source.add_class("cqa-pair-source")
        self.images = [image_widget(size, "cqa-pair-cam") for _ in range(2)]
        self.titles = [caption("", "cqa-pair-title") for _ in range(2)]
        self.deltas = [caption("", "cqa-ig-delta") for _ in range(2)]
        labels = [f"b{i}" for i in range(b)] + ["bias"]
        self.matrix = heatmap_figure("contribution <u_a_i, u_b_j> / (|e_a||e_b|)", b + 1, height=300, labels=labels)
        self.loo = bar_figure("similarity without branch i (leave-one-out)", b, height=300, yrange=(-1.0, 1.05))
        boxes = []
        for fig, cls in ((self.matrix, "cqa-pair-matrix"), (self.loo, "cqa-pair-loo")):
            box = W.Box([fig])
            box.add_class(cls)
            boxes.append(box)
        self.widget = W.VBox([
            W.HBox([self.threshold, self.verdict]),
            self.source,
            W.HBox([W.VBox([t, im, d]) for t, im, d in zip(self.titles, self.images, self.deltas, strict=True)]),
            W.HBox(boxes),
        ])
        self.widget.add_class("cqa-pair-tab")
        self.threshold.observe(messages.guard(lambda _: self.refresh()), names="value")
        self.source.observe(messages.guard(lambda _: self.refresh()), names="value")

    def show(self, face: Face, other: Face | None) -> None:
        """Compare ``face`` (a) with ``other`` (b)."""
        self.face, self.other = face, other
        self.refresh()

    def refresh(self) -> None:
        """Recompute (cached) and redraw in place."""
        if self.face is None or self.other is None:
            self.verdict.value = "pick a second face on the left"
            return
        src = self.source.value
        method = SOURCE_METHODS[src]
        if method != "gradcam":
            self.messages.info(f"computing {src} for this pair (a few seconds on a CPU; cached after)")
        pa = self.session.analyse(self.face, self.other, methods=(method,))
        if method != "gradcam" and self.messages.last_error is None:
            self.messages.clear()
        sim, thr = float(pa.similarity), float(self.threshold.value)
        same = sim >= thr
        colour = "#1b7f3b" if same else "#b00020"
        self.verdict.value = (f"cos = <b class='cqa-similarity'>{sim:.3f}</b> &nbsp; "
                              f"<b style='color:{colour}'>{'same person' if same else 'different people'}</b>"
                              f" at threshold {thr:.2f}")
        for i, (fa, m) in enumerate(((pa, pa.maps[method]), (pa.other, pa.maps_other[method]))):
            name = (self.face, self.other)[i].name
            self.titles[i].value = f"<b>{html.escape(name)}</b> {html.escape(src)}"
            self.images[i].value = png(overlay_on(fa, unit(m), 0.5), self.size)
            self.deltas[i].value = ig_text(fa.ig) if method == "ig" else ""
        set_heatmap(self.matrix, pa.decomposition,
                    title=f"branch terms, sum {float(pa.decomposition.sum()):.3f}")
        set_bars(self.loo, [pa.leave_one_out])
