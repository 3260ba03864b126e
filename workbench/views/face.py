"""FaceExplorer: the photo with the selected map, b branch overlays, quality, relation.

The map choices are the current model's methods (``Session.info()["methods"]``, from the explainer
registry): a plain recognizer has no branch overlays, quality or relation, and says so in one line.
"""

from __future__ import annotations

import html

import ipywidgets as W
import numpy as np

from cqa_core.data.align import no_face_note
from workbench.session import Face, Session
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


def check_text(check) -> str:
    """A map method's check shown under its map (``explain.result.Check``; red when it failed)."""
    if check is None:
        return ""
    colour = "#1b7f3b" if check.ok else "#b00020"
    return f"<span style='color:{colour}'>{html.escape(check.text)}</span>"


class FaceExplorer:
    """One face: the chosen CAM source on the photo, the b branch CAMs titled with quality."""

    def __init__(self, session: Session, messages: Messages, size: int = 150) -> None:
        self.session, self.messages, self.size = session, messages, size
        self.face: Face | None = None
        self.other: Face | None = None
        b = session.branches
        self.source = W.ToggleButtons(options=session.sources(), description="CAM source")
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
        self.plain = caption("", "cqa-plain-note")  # why a plain model shows no branches
        branches = W.HBox([W.VBox([t, im]) for t, im in zip(self.branch_titles, self.branch_images, strict=True)])
        self.widget = W.VBox([
            W.HBox([self.source, self.opacity]),
            self.info,
            W.HBox([W.VBox([self.main_title, self.main_image, self.ig_delta]), self.relation]),
            self.plain,
            branches,
        ])
        self.branches = branches
        self.widget.add_class("cqa-face-tab")
        self.source.observe(messages.guard(lambda _: self.refresh()), names="value")
        self.opacity.observe(messages.guard(lambda _: self.refresh()), names="value")

    def show(self, face: Face, other: Face | None = None) -> None:
        """Explain ``face`` (``other`` is the partner for the similarity CAM sources)."""
        self.face, self.other = face, other
        sources = self.session.sources()
        if tuple(self.source.options) != sources:  # another model: its own methods
            keep = self.source.value if self.source.value in sources else sources[0]
            self.source.options = sources
            self.source.value = keep
        self.refresh()

    def refresh(self) -> None:
        """Redraw everything from the (cached) analysis, in place: compute first, then push."""
        if self.face is None:
            return
        fa = self.session.analyse(self.face)
        src, alpha = self.source.value, float(self.opacity.value)
        slow = self.session.slow(src)
        if slow:
            self.messages.info(f"computing {src} for this pair (seconds to minutes on a CPU; cached after)")
        heat = unit(self.session.source_map(self.face, self.other, src))  # (S, S)
        if slow and self.messages.last_error is None:  # the "computing" note only: a no-face warning stays
            self.messages.clear()
        main = png(overlay_on(fa, heat, alpha), 2 * self.size)
        partner = f" vs {html.escape(self.other.name)}" if (self.session.method(src)["pair"] and self.other) else ""
        info = self.session.info()
        br = fa.branches
        quality = "" if br else " (a plain model's quality reading)"
        aligned = ("<b class='cqa-no-face'>no face found: centre of the photo</b>"
                   if no_face_note("", fa.align_method, self.face.align) else f"aligned by {fa.align_method}")
        self.info.value = (f"<b>{html.escape(self.face.name)}</b> &nbsp; {html.escape(info['name'])} &nbsp; embedding "
                           f"norm <span class='cqa-embedding-norm'>{fa.embedding_norm:.2f}</span>{quality} &nbsp; "
                           + (f"CAL {br.cal:.3f} &nbsp; " if br else "") + aligned)
        self.main_title.value = f"<b>{html.escape(src)}</b>{partner}"
        self.ig_delta.value = check_text(self.session.source_checks(self.face, self.other, src))
        self.main_image.value = main
        self.branches.layout.display = None if br else "none"
        if br is None:
            self.relation.value = ""
            self.plain.value = (f"{html.escape(info['name'])} is a plain recognizer ({html.escape(info['kind'])}): "
                                "no branch attention, QAN quality or relation to show; its maps are on the left")
            return
        self.plain.value = ""
        if len(self.branch_images) != br.count:  # a model with another number of branches
            self.branch_images = [image_widget(self.size, "cqa-branch-cam") for _ in br.quality]
            self.branch_titles = [caption("", "cqa-branch-title") for _ in br.quality]
            self.branches.children = [W.VBox([t, im]) for t, im in zip(self.branch_titles, self.branch_images,
                                                                        strict=True)]
        branches = [png(ov.image, self.size) for ov in fa.overlays(on_photo=True, alpha=alpha)]
        self.relation.value = html_heatmap(br.relation, "relation A (QAN)")
        for i, (q, image) in enumerate(zip(br.quality, branches, strict=True)):
            self.branch_titles[i].value = f"<b>branch {i}</b>&nbsp;&nbsp;q={q:.2f}"
            self.branch_images[i].value = image
