"""MaskLab: put a synthetic mask, an occluder or blur on the face and watch quality and CAMs move.

Edits come from ``cqa_core.data.degrade``: ``apply_mask`` for each of its ``MASK_KINDS``, and
``occlude`` / ``blur`` / ``downscale`` driven by the sliders. The numbers come from
``cqa_core.explain.quality.mask_effect``. The edited face's branch attention maps share one scale
("shared across branches"), shown once under them with its colour bar (``cqa_core.explain.pictures``).
"""

from __future__ import annotations

import ipywidgets as W
import numpy as np

from cqa_core.data import degrade
from cqa_core.data.degrade import MASK_KINDS, apply_mask
from cqa_core.explain.pictures import bar, branch_scales, legend, on_chip
from cqa_core.recognizers.registry import DEFAULT
from workbench.session import Face, Session
from workbench.views.common import (
    READING_STYLE,
    Messages,
    bar_figure,
    caption,
    image_widget,
    plain_note,
    png,
    set_bars,
    show_parts,
)
from workbench.views.markup import escape

SLIDER_KINDS = ("occluder", "blur", "low resolution")


def occluder_box(amount: float, x: int, y: int, n: int = 112) -> tuple[int, int, int, int]:
    """(x0, y0, x1, y1) of a square of side 0.6 * amount * n centred on (x, y)."""
    side = max(4, int(n * 0.6 * amount))
    return max(0, x - side // 2), max(0, y - side // 2), x + side // 2, y + side // 2


def slider_edit(aligned: np.ndarray, kind: str, amount: float, x: int, y: int) -> tuple[np.ndarray, np.ndarray]:
    """Slider-driven edits through ``cqa_core.data.degrade``: (edited, alpha of the edited area)."""
    alpha = np.ones(aligned.shape[:2], np.float32)
    if kind == "occluder":
        x0, y0, x1, y1 = occluder_box(amount, x, y, aligned.shape[0])
        alpha[:] = 0.0
        alpha[y0:y1, x0:x1] = 1.0
        return degrade.occlude(aligned, box=(x0, y0, x1, y1), value=90), alpha
    if kind == "blur":
        return degrade.blur(aligned, sigma=max(0.3, 6.0 * amount)), alpha
    if kind == "low resolution":
        return degrade.downscale(aligned, factor=1.0 + 7.0 * amount), alpha
    raise ValueError(f"unknown edit {kind!r}")


class MaskLab:
    """Edit controls, clean vs edited face with CAMs, quality bars and deltas beside clean values."""

    def __init__(self, session: Session, messages: Messages, size: int = 150) -> None:
        self.session, self.messages, self.size = session, messages, size
        self.face: Face | None = None
        self.kind = W.Dropdown(options=[*MASK_KINDS, *SLIDER_KINDS], description="edit")
        self.kind.add_class("cqa-mask-kind")
        self.amount = W.FloatSlider(value=0.6, min=0.05, max=1.0, step=0.05, description="amount",
                                    continuous_update=False)
        self.x = W.IntSlider(value=56, min=0, max=111, description="x", continuous_update=False)
        self.y = W.IntSlider(value=48, min=0, max=111, description="y", continuous_update=False)
        self.seed = W.IntText(value=0, description="seed", layout=W.Layout(width="160px"))
        self.apply = W.Button(description="apply", button_style="primary")
        self.apply.add_class("cqa-mask-apply")
        self.images = [image_widget(size, "cqa-mask-image") for _ in range(2)]
        self.titles = [caption("clean", "cqa-mask-title"), caption("edited", "cqa-mask-title")]
        self.cams = [image_widget(size // 2, "cqa-mask-cam") for _ in range(session.branches)]
        self.cam_bar = image_widget(2 * size, "cqa-colour-bar")
        self.cam_legend = caption("", "cqa-map-scale")
        for im in (*self.cams, self.images[1], self.cam_bar):
            im.layout.visibility = "hidden"  # filled by the first 'apply'
        self.values = caption("press apply", "cqa-mask-values")
        self.bars = bar_figure("quality: clean vs edited", session.branches, height=260, names=("clean", "edited"),
                               yrange=(0.0, 1.1))
        bars_box = W.Box([self.bars])
        bars_box.add_class("cqa-mask-bars")
        controls = W.VBox([self.kind, self.amount, W.HBox([self.x, self.y]), W.HBox([self.seed, self.apply])])
        faces = W.HBox([W.VBox([t, im]) for t, im in zip(self.titles, self.images, strict=True)])
        self.branch_parts = [bars_box, W.HBox(self.cams), self.cam_bar, self.cam_legend]  # models with branches
        self.widget = W.VBox([controls, W.HBox([faces, self.branch_parts[0]]), *self.branch_parts[1:], self.values])
        self.widget.add_class("cqa-mask-tab")
        self.apply.on_click(messages.guard(lambda _: self.run()))

    def show(self, face: Face, other: Face | None = None) -> None:
        """New face: show it clean; the edit is re-applied only on 'apply'."""
        self.face = face
        fa = self.session.analyse(face)
        self.images[0].value = png(fa.aligned, self.size)
        br = fa.branches
        self.cam_legend.value = ""
        self.titles[1].value = "edited: press apply"  # nothing left from an earlier edit or model
        show_parts(self.branch_parts, br is not None)
        for im in (*self.cams, self.images[1], self.cam_bar):
            im.layout.visibility = "hidden"
        if br is None:
            self.values.value = escape(plain_note(self.session, "quality deltas are QAN's")
                                            + "; apply shows the edited face's similarity to the clean one")
            return
        set_bars(self.bars, [br.quality, np.zeros_like(br.quality)])
        self.values.value = "clean: " + " ".join(
            f"branch {i} q=<span class='cqa-mask-q'>{q:.5f}</span>" for i, q in enumerate(br.quality)) + (
            "; pick an edit and press apply for the edited face's quality, attention and similarity")

    def edit(self, aligned: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The edited face and its alpha, from the library when the kind is one of its masks."""
        kind = self.kind.value
        if kind in MASK_KINDS:
            masked, alpha = apply_mask(aligned, kind=kind, seed=int(self.seed.value),
                                       mask_root=self.session.settings.data_root / "masks")
            return np.asarray(masked, np.uint8), np.asarray(alpha, np.float32)
        return slider_edit(aligned, kind, float(self.amount.value), int(self.x.value), int(self.y.value))

    def run(self) -> None:
        """Apply the edit, re-run the model on the edited face, show deltas beside clean values."""
        if self.face is None:
            raise ValueError("select a face first")
        clean = self.session.analyse(self.face)
        crop = self.session.analyse(self.face, model=DEFAULT).aligned  # masks are drawn on the ArcFace crop
        edited, alpha = self.edit(crop)
        if clean.branches is None:  # a plain recognizer: what it can say is how far the edit moves the embedding
            pair = self.session.analyse(self.session.array_face(crop, "clean"), self.session.array_face(edited, "edited"),
                                        methods=())
            sim = pair.similarity
            self.images[1].value = png(edited, self.size)
            self.images[1].layout.visibility = "visible"
            self.titles[1].value = f"edited ({escape(self.kind.value)}): cos to clean <b>{sim:.3f}</b>"
            return
        eff = self.session.mask_effect(self.face, edited, alpha)
        fe = self.session.analyse(self.session.array_face(edited, f"{self.face.name} (edited)")).branches
        self.images[1].value = png(edited, self.size)
        self.images[1].layout.visibility = "visible"
        self.titles[1].value = f"edited ({escape(self.kind.value)}): cos to clean <b>{eff.similarity:.3f}</b>"
        scales = branch_scales(fe.attention)  # one scale over the edited face's branches
        for im, m, scale in zip(self.cams, fe.attention, scales, strict=False):
            im.value = png(on_chip(edited, m, scale, 0.5), self.size // 2)
            im.layout.visibility = "visible"
        self.cam_bar.value = png(bar(scales[0], 2 * self.size))
        self.cam_bar.layout.visibility = "visible"
        self.cam_legend.value = (f"<div style='{READING_STYLE}'>edited face's branch attention: "
                                 f"{escape(legend(scales[0]))}</div>")
        set_bars(self.bars, [eff.quality_clean, eff.quality_masked])
        rows = "".join(
            f"<tr><td>branch {i}</td><td>{c:.5f}</td><td>q=<span class='cqa-mask-q'>{m:.5f}</span></td>"
            f"<td>{d:+.1e}</td><td>{s:.2f}</td></tr>"
            for i, (c, m, d, s) in enumerate(zip(eff.quality_clean, eff.quality_masked, eff.quality_delta,
                                                 eff.mask_share_masked, strict=True)))
        self.values.value = (f"<table class='cqa-mask-table'><tr><th></th><th>clean q</th><th>edited q</th>"
                             f"<th>delta</th><th>attention in edit</th></tr>{rows}</table>"
                             f"similarity to the clean face: <b class='cqa-mask-sim'>{eff.similarity:.3f}</b>")
