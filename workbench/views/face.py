"""FaceExplorer: the photo with the selected map, b branch overlays, quality, relation.

The map choices are the current model's methods (``Session.info()["methods"]``, from the explainer
registry): a plain recognizer has no branch overlays, quality or relation, and says so in one line.
Every map is drawn by ``cqa_core.explain.pictures`` on a stated scale with its colour bar: the
"map scale" dropdown shares one scale between this face's map and its partner's ("shared across
pair", the default) or gives the map its own ("per map"); "branch scale" does the same for the
branch attention maps ("shared across branches", the default, so the branches compare).
"""

from __future__ import annotations

import ipywidgets as W
import numpy as np

from cqa_core.data.align import no_face_note
from cqa_core.explain.maprender import PER_MAP
from cqa_core.explain.pictures import (
    BRANCH_NORMALISATIONS,
    PAIR_NORMALISATIONS,
    RELATION_READING,
    branch_scales,
    kind_of,
    pair_scales,
)
from workbench.session import Face, Session
from workbench.views.caveat import caveat_note
from workbench.views.common import (
    READING_STYLE,
    MapPicture,
    Messages,
    caption,
    html_heatmap,
    overlay_on,
)
from workbench.views.markup import escape


def check_text(check) -> str:
    """A map method's check shown under its map (``explain.result.Check``; red when it failed)."""
    if check is None:
        return ""
    colour = "#1b7f3b" if check.ok else "#b00020"
    return f"<span style='color:{colour}'>{escape(check.text)}</span>"


def relation_reading() -> str:
    """The one-line reading of QAN's relation matrix A, under it."""
    return f"<div class='cqa-relation-reading' style='{READING_STYLE};max-width:340px'>{escape(RELATION_READING)}</div>"


class FaceExplorer:
    """One face: the chosen map source on the photo, the b branch attention maps titled with quality."""

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
        self.scale = W.Dropdown(options=PAIR_NORMALISATIONS, value=PAIR_NORMALISATIONS[0], description="map scale")
        self.scale.add_class("cqa-map-scale-choice")
        self.branch_scale = W.Dropdown(options=BRANCH_NORMALISATIONS, value=BRANCH_NORMALISATIONS[0],
                                       description="branch scale")
        self.branch_scale.add_class("cqa-branch-scale-choice")
        self.info = caption("", "cqa-face-info")
        self.main = MapPicture(2 * size, "cqa-source-image", "cqa-source-title")
        self.main_image, self.main_title = self.main.image, self.main.title
        self.ig_delta = caption("", "cqa-ig-delta")
        self.branch_maps = [MapPicture(size, "cqa-branch-cam", "cqa-branch-title") for _ in range(b)]
        # an HTML table, not a plotly figure: this tab is the first page every viewer loads
        self.relation = W.HTML("")
        self.relation.add_class("cqa-relation")
        self.plain = caption("", "cqa-plain-note")  # why a plain model shows no branches
        branches = W.HBox([p.widget for p in self.branch_maps])
        self.widget = W.VBox([
            W.HBox([self.source, self.opacity]),
            W.HBox([self.scale, self.branch_scale]),
            self.info,
            W.HBox([W.VBox([self.main.widget, self.ig_delta]), self.relation]),
            self.plain,
            branches,
        ])
        self.branches = branches
        self.widget.add_class("cqa-face-tab")
        for control in (self.source, self.opacity, self.scale, self.branch_scale):
            control.observe(messages.guard(lambda _: self.refresh()), names="value")

    @property
    def branch_images(self) -> list[W.Image]:
        return [p.image for p in self.branch_maps]

    @property
    def branch_titles(self) -> list[W.HTML]:
        return [p.title for p in self.branch_maps]

    def show(self, face: Face, other: Face | None = None) -> None:
        """Explain ``face`` (``other`` is the partner for the similarity CAM sources)."""
        self.face, self.other = face, other
        sources = self.session.sources()
        if tuple(self.source.options) != sources:  # another model: its own methods
            keep = self.source.value if self.source.value in sources else sources[0]
            self.source.options = sources
            self.source.value = keep
        self.refresh()

    def source_maps(self, label: str) -> list[np.ndarray]:
        """This face's map of ``label``, then its partner's where the scale is shared across the pair."""
        record = self.session.method(label)
        name = record["name"]
        if record["pair"]:
            if self.other is None:
                raise ValueError(f"{label} explains a similarity: pick a second face first")
            return list(self.session.analyse(self.face, self.other, methods=(name,)).maps[name])  # [a vs b, b vs a]
        own = self.session.analyse(self.face, methods=(name,)).maps[name]
        if self.other is None or self.scale.value == PER_MAP:
            return [own]
        return [own, self.session.analyse(self.other, methods=(name,)).maps[name]]

    def refresh(self) -> None:
        """Redraw everything from the (cached) analysis, in place: compute first, then push."""
        if self.face is None:
            return
        fa = self.session.analyse(self.face)
        src, alpha = self.source.value, float(self.opacity.value)
        slow = self.session.slow(src)
        if slow:
            self.messages.info(f"computing {src} for this pair (seconds to minutes on a CPU; cached after)")
        maps = self.source_maps(src)
        scale = pair_scales(maps, kind_of(self.session.method(src)), self.scale.value)[0]
        if slow and self.messages.last_error is None:  # the "computing" note only: a no-face warning stays
            self.messages.clear()
        partner = f" vs {escape(self.other.name)}" if (self.session.method(src)["pair"] and self.other) else ""
        info = self.session.info()
        br = fa.branches
        quality = "" if br else " (a plain model's quality reading)"
        aligned = ("<b class='cqa-no-face'>no face found: centre of the photo</b>"
                   if no_face_note("", fa.align_method, self.face.align) else f"aligned by {fa.align_method}")
        self.info.value = (f"<b>{escape(self.face.name)}</b> &nbsp; {escape(info['name'])} &nbsp; embedding "
                           f"norm <span class='cqa-embedding-norm'>{fa.embedding_norm:.2f}</span>{quality} &nbsp; "
                           + (f"CAL {br.cal:.3f} &nbsp; " if br else "") + aligned)
        self.main_title.value = f"<b>{escape(src)}</b>{partner}" + caveat_note(self.session.method(src))
        self.ig_delta.value = check_text(self.session.source_checks(self.face, self.other, src))
        self.main.show(overlay_on(fa, maps[0], scale, alpha), scale)
        self.branches.layout.display = None if br else "none"
        if br is None:
            self.relation.value = ""
            self.plain.value = (f"{escape(info['name'])} is a plain recognizer ({escape(info['kind'])}): "
                                "no branch attention, QAN quality or relation to show; its maps are on the left")
            return
        self.plain.value = ""
        if len(self.branch_maps) != br.count:  # a model with another number of branches
            self.branch_maps = [MapPicture(self.size, "cqa-branch-cam", "cqa-branch-title") for _ in br.quality]
            self.branches.children = [p.widget for p in self.branch_maps]
        scales = branch_scales(br.attention, self.branch_scale.value)
        self.relation.value = html_heatmap(br.relation, "relation A (QAN, Eq. 4)") + relation_reading()
        for i, (q, s) in enumerate(zip(br.quality, scales, strict=True)):
            self.branch_maps[i].title.value = f"<b>branch {i}</b>&nbsp;&nbsp;q={q:.2f}"
            self.branch_maps[i].show(overlay_on(fa, br.attention[i], s, alpha, photo_map=br.attention_photo[i]), s)
