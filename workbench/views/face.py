"""FaceExplorer: the photo with the selected CAM source, b branch overlays, quality, relation."""

from __future__ import annotations

import html

import ipywidgets as W
import numpy as np

from workbench.session import CAM_SOURCES, Face, Session
from workbench.views.common import (
    Messages,
    caption,
    html_heatmap,
    image_widget,
    overlay_on,
    png,
)


def unit(m: np.ndarray) -> np.ndarray:
    """A signed or unscaled map shown as [0, 1]: positive part over its maximum."""
    m = np.clip(np.asarray(m, dtype=np.float32), 0, None)
    return m / (float(m.max()) + 1e-12)


def ig_text(check) -> str:
    """The IG completeness line shown under an IG map (red when the step cap was hit)."""
    if check is None:
        return ""
    colour = "#1b7f3b" if check.converged else "#b00020"
    return f"<span style='color:{colour}'>{html.escape(check.describe())}</span>"


class FaceExplorer:
    """One face: the chosen CAM source on the photo, the b branch CAMs titled with quality."""

    def __init__(self, session: Session, messages: Messages, size: int = 150) -> None:
        self.session, self.messages, self.size = session, messages, size
        self.face: Face | None = None
        self.other: Face | None = None
        b = session.branches
        self.source = W.ToggleButtons(options=CAM_SOURCES, value="attention", description="CAM source")
        self.source.add_class("cqa-cam-source")
        self.opacity = W.FloatSlider(value=0.5, min=0.0, max=1.0, step=0.05, description="opacity",
                                     continuous_update=False)
        self.opacity.add_class("cqa-opacity")
        self.info = caption("", "cqa-face-info")
        self.main_image = image_widget(2 * size, "cqa-source-image")
        self.main_title = caption("", "cqa-source-title")
        self.ig_delta = caption("", "cqa-ig-delta")
        self.branch_images = [image_widget(size, "cqa-branch-cam") for _ in range(b)]
        self.branch_titles = [caption(f"branch {i}", "cqa-branch-title") for i in range(b)]
        # an HTML table, not a plotly figure: this tab is the first page every viewer loads
        self.relation = W.HTML("")
        self.relation.add_class("cqa-relation")
        branches = W.HBox([W.VBox([t, im]) for t, im in zip(self.branch_titles, self.branch_images, strict=True)])
        self.widget = W.VBox([
            W.HBox([self.source, self.opacity]),
            self.info,
            W.HBox([W.VBox([self.main_title, self.main_image, self.ig_delta]), self.relation]),
            branches,
        ])
        self.widget.add_class("cqa-face-tab")
        self.source.observe(messages.guard(lambda _: self.refresh()), names="value")
        self.opacity.observe(messages.guard(lambda _: self.refresh()), names="value")

    def show(self, face: Face, other: Face | None = None) -> None:
        """Explain ``face`` (``other`` is the partner for the similarity CAM sources)."""
        self.face, self.other = face, other
        self.refresh()

    def refresh(self) -> None:
        """Redraw everything from the (cached) analysis, in place: compute first, then push."""
        if self.face is None:
            return
        fa = self.session.analyse(self.face)
        src, alpha = self.source.value, float(self.opacity.value)
        if src in ("integrated gradients", "occlusion"):
            self.messages.info(f"computing {src} for this pair (a few seconds on a CPU; cached after)")
        heat = unit(self.session.source_map(self.face, self.other, src))  # (112, 112)
        if self.messages.last_error is None:
            self.messages.clear()
        main = png(overlay_on(fa, heat, alpha), 2 * self.size)
        branches = [png(ov.image, self.size) for ov in fa.overlays(on_photo=True, alpha=alpha)]
        partner = f" vs {html.escape(self.other.name)}" if (src != "attention" and self.other) else ""
        self.info.value = (f"<b>{html.escape(self.face.name)}</b> &nbsp; embedding norm "
                           f"<span class='cqa-embedding-norm'>{fa.embedding_norm:.2f}</span> &nbsp; "
                           f"CAL {fa.cal:.3f} &nbsp; aligned by {fa.align_method}")
        self.main_title.value = f"<b>{html.escape(src)}</b>{partner}"
        self.ig_delta.value = ig_text(self.session.analyse(self.face, self.other, methods=("ig",)).ig) \
            if src == "integrated gradients" and self.other else ""
        self.main_image.value = main
        self.relation.value = html_heatmap(fa.relation, "relation A (QAN)")
        for i, (q, image) in enumerate(zip(fa.quality, branches, strict=True)):
            self.branch_titles[i].value = f"<b>branch {i}</b>&nbsp;&nbsp;q={q:.2f}"
            self.branch_images[i].value = image
