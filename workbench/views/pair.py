"""PairInspector: two faces under one model, or two models side by side.

For the current model: cos(e_a, e_b) and the verdict at the model's own LFW threshold, the maps of
one method on both faces, and (CQA-Face) the branch-to-branch decomposition and leave-one-out.
Both faces' maps share one scale by default ("shared across pair", so their colours compare; the
"scale" dropdown offers "per map"), each with its colour bar, unit and range
(``cqa_core.explain.pictures``). The decomposition's rows are face a's branch terms, its columns face b's.
"beside" adds a second model's row: its cosine, its verdict at its own threshold, and the same
method's maps, or one line on why that model cannot show them. A threshold not computed yet is
computed in the background (minutes the first time) and the verdict fills in when it arrives.
No face, no verdict: when MTCNN found no face in either photo, each row repeats the warning and
gives no cosine or verdict, unless the viewer ticks "analyse the centre anyway".
"""

from __future__ import annotations

import threading
import time

import ipywidgets as W

from cqa_core.data.align import no_face_note
from cqa_core.evaluation.runs.calibration import verdict_line
from cqa_core.explain.pictures import (
    DECOMPOSITION_READING,
    LOO_READING,
    PAIR_NORMALISATIONS,
    kind_of,
    pair_scales,
)
from workbench.session import Face, Session
from workbench.views.caveat import caveat_note
from workbench.views.common import (
    MapPicture,
    Messages,
    bar_figure,
    caption,
    heatmap_figure,
    overlay_on,
    reading,
    set_bars,
    set_heatmap,
)
from workbench.views.face import check_text
from workbench.views.header import no_face_html
from workbench.views.markup import escape

NONE = ""
POLL_S = 5.0
"""How often a verdict waiting for its model's threshold asks again."""


class ModelRow:
    """One model's line of the Pair tab: its verdict, the two faces' maps and their IG checks."""

    def __init__(self, size: int, cls: str) -> None:
        self.verdict = caption("", f"cqa-pair-verdict{cls}")
        self.pictures = [MapPicture(size, "cqa-pair-cam", "cqa-pair-title") for _ in range(2)]
        self.images = [p.image for p in self.pictures]
        self.titles = [p.title for p in self.pictures]
        self.deltas = [caption("", "cqa-ig-delta") for _ in range(2)]
        self.note = caption("", "cqa-pair-note")
        faces = W.HBox([W.VBox([p.widget, d]) for p, d in zip(self.pictures, self.deltas, strict=True)])
        self.widget = W.VBox([self.verdict, self.note, faces])
        self.widget.add_class(f"cqa-pair-row{cls}")


class PairInspector:
    """Two faces: each model's cos(e_a, e_b) at its own threshold, and where the similarity comes from."""

    def __init__(self, session: Session, messages: Messages, size: int = 180) -> None:
        self.session, self.messages, self.size = session, messages, size
        self.face: Face | None = None
        self.other: Face | None = None
        b = session.branches
        self.source = W.ToggleButtons(options=self.labels(), description="map")
        self.source.add_class("cqa-pair-source")
        self.beside = W.Dropdown(options=[("no second model", NONE)], value=NONE, description="beside")
        self.beside.add_class("cqa-pair-beside")
        self.scale = W.Dropdown(options=PAIR_NORMALISATIONS, value=PAIR_NORMALISATIONS[0], description="scale")
        self.scale.add_class("cqa-pair-scale-choice")
        self.anyway = W.Checkbox(value=False, description="analyse the centre anyway", indent=False,
                                 layout=W.Layout(width="220px"))
        self.anyway.add_class("cqa-pair-anyway")
        self.main = ModelRow(size, "")
        self.second = ModelRow(size, "-other")
        self.second.widget.layout.display = "none"
        self.verdict, self.images, self.titles, self.deltas = (
            self.main.verdict, self.main.images, self.main.titles, self.main.deltas)
        self.verdict.value = "pick a second face on the left"
        labels = [f"b{i}" for i in range(b)] + ["bias"]
        self.matrix = heatmap_figure("branch terms of the cosine", b + 1, height=330, labels=labels, signed=True,
                                     unit="share of cosine")
        self.loo = bar_figure("cosine without branch i (leave-one-out)", b, height=330, yrange=(-1.0, 1.05))
        boxes = []
        for fig, cls in ((self.matrix, "cqa-pair-matrix"), (self.loo, "cqa-pair-loo")):
            box = W.Box([fig])
            box.add_class(cls)
            boxes.append(box)
        self.readings = [reading(DECOMPOSITION_READING, "cqa-pair-matrix-reading", "420px"),
                         reading("The dashed line is the full cosine. " + LOO_READING, "cqa-pair-loo-reading", "420px")]
        for box, text in zip(boxes, self.readings, strict=True):
            box.children = (*box.children, text)
            box.layout.flex_flow = "column"
        self.parts = W.HBox(boxes)
        self.plain = caption("", "cqa-plain-note")
        self.widget = W.VBox([W.HBox([self.source, self.beside, self.scale, self.anyway]), self.main.widget,
                              self.second.widget,
                              self.plain, self.parts])
        self.widget.add_class("cqa-pair-tab")
        for control in (self.source, self.beside, self.scale, self.anyway):
            control.observe(messages.guard(lambda _: self.refresh()), names="value")
        self._waiting: set[str] = set()

    def labels(self) -> tuple[str, ...]:
        return tuple(self.session.methods(pair=True))

    def show(self, face: Face, other: Face | None) -> None:
        """Compare ``face`` (a) with ``other`` (b)."""
        self.face, self.other = face, other
        labels = self.labels()
        if tuple(self.source.options) != labels:  # another model: its own methods
            keep = self.source.value if self.source.value in labels else labels[0]
            self.source.options = labels
            self.source.value = keep
        others = [("no second model", NONE), *((info["name"], spec) for spec, info in self.session.models.items()
                                                if spec != self.session.current)]
        if [tuple(o) for o in self.beside.options] != others:  # a model was added or picked
            keep = self.beside.value if self.beside.value in [v for _, v in others] else NONE
            self.beside.options = others
            self.beside.value = keep
        self.refresh()

    def refresh(self) -> None:
        """Recompute (cached) and redraw in place."""
        if self.face is None or self.other is None:
            self.verdict.value = "pick a second face on the left"
            return
        src = self.source.value
        slow = self.session.slow(src)
        if slow:
            self.messages.info(f"computing {src} for this pair (seconds to minutes on a CPU; cached after)")
        pa = self.draw(self.main, self.session.current, src)
        second = self.beside.value
        self.second.widget.layout.display = None if second else "none"
        if second:
            self.draw(self.second, second, src)
        if slow and self.messages.last_error is None:
            self.messages.clear()
        info = self.session.info()
        if pa.branches is None:
            self.parts.layout.display = "none"
            self.plain.value = (f"{escape(info['name'])} is a plain recognizer: its similarity has no branch "
                                "terms to split it into (that is CQA-Face's decomposition)")
            return
        self.parts.layout.display, self.plain.value = None, ""
        self.draw_parts(pa)

    def draw_parts(self, pa) -> None:
        """The decomposition (rows face a, columns face b) and leave-one-out with the full cosine as a line."""
        dec, sim = pa.branches.decomposition, float(pa.similarity)
        name_a, name_b = (escape(f.name) for f in (self.face, self.other))
        set_heatmap(self.matrix, dec, title=f"branch terms of the cosine, sum {float(dec.sum()):.3f}")
        with self.matrix.batch_update():
            self.matrix.layout.yaxis.title.text = f"rows: {name_a} (face a)"
            self.matrix.layout.xaxis.title.text = f"columns: {name_b} (face b)"
        set_bars(self.loo, [pa.branches.leave_one_out])
        with self.loo.batch_update():
            self.loo.layout.shapes = [dict(type="line", xref="paper", x0=0, x1=1, y0=sim, y1=sim,
                                           line=dict(color="#b00020", dash="dash", width=2))]
            self.loo.layout.title.text = f"cosine without branch i (dashed line: full cosine {sim:.3f})"
            self.loo.layout.yaxis.title.text = "cosine"

    def draw(self, row: ModelRow, model: str, label: str):
        """One model's verdict and maps of ``label`` (or why it has none); returns its pair analysis."""
        info = self.session.info(model)
        method = self.session.methods(model, pair=True).get(label)
        pa = self.session.analyse(self.face, self.other, methods=(method,) if method else (), model=model)
        notes = [n for n in (no_face_note(f.name, pa.face(i).align_method, f.align)
                             for i, f in enumerate((self.face, self.other))) if n]
        warning = "".join(map(no_face_html, notes))
        if notes and not self.anyway.value:  # no face, no verdict
            row.verdict.value = warning + ("<span class='cqa-no-verdict'>no verdict: the photo has no face to compare "
                                           "(tick \"analyse the centre anyway\" to compare its centre)</span>")
        else:
            row.verdict.value = warning + self.verdict_text(model, float(pa.similarity))
        if method is None:
            needs = next((m["needs"] for m in self.session.info()["methods"] if m["label"] == label), "?")
            row.note.value = escape(f"{label} needs {needs}: {info['name']} is {info['description']}")
        else:
            row.note.value = ""
        checks = pa.checks.get(method) or [None, None]
        scales = (pair_scales(pa.maps[method], kind_of(self.session.method(label, model)), self.scale.value)
                  if method else [None, None])
        for i in range(2):
            fa, m = pa.face(i), pa.maps[method][i] if method else None
            name = (self.face, self.other)[i].name
            row.titles[i].value = (f"<b>{escape(name)}</b> {escape(label)} &nbsp; <i>{escape(info['name'])}</i>"
                                   + caveat_note(self.session.method(label, model) if method else None))
            row.pictures[i].show(overlay_on(fa, m, scales[i], 0.5) if m is not None else fa.photo, scales[i])
            row.deltas[i].value = check_text(checks[i])
        return pa

    def verdict_text(self, model: str, sim: float) -> str:
        """'cos = 0.412  same person at its LFW threshold 0.287' (or a note while the threshold is computed),
        and under it the calibrated verdict when a benchmark run of the model has one."""
        return self.threshold_text(model, sim) + self.confidence(model, sim)

    def threshold_text(self, model: str, sim: float) -> str:
        info = self.session.info(model)
        cos = f"<i>{escape(info['name'])}</i>: cos = <b class='cqa-similarity'>{sim:.3f}</b> &nbsp; "
        thr = self.session.threshold(model)
        if "unavailable" in thr:
            return cos + escape(thr["unavailable"])
        if "threshold" not in thr:
            self.wait_for_threshold(model)
            return cos + escape(thr.get("computing", "its threshold is being computed"))
        same = sim >= thr["threshold"]
        colour = "#1b7f3b" if same else "#b00020"
        return (cos + f"<b style='color:{colour}'>{'same person' if same else 'different people'}</b> at its LFW "
                f"threshold <span class='cqa-threshold'>{thr['threshold']:.3f}</span> "
                f"({escape(thr['source'])}, accuracy {100 * thr['accuracy']:.1f}%)")

    def confidence(self, model: str, sim: float) -> str:
        """The calibrated verdict line, when a benchmark run of this model in the runs folder has a calibration."""
        cal = self.session.calibration(model)
        return "" if cal is None else f"<br><span class='cqa-confidence'>{escape(verdict_line(cal, sim))}</span>"

    def wait_for_threshold(self, model: str) -> None:
        """Redraw the verdicts once the model's threshold is known (a background thread polls for it)."""
        if model in self._waiting:
            return
        self._waiting.add(model)

        def poll() -> None:
            try:
                while "threshold" not in self.session.threshold(model):
                    time.sleep(POLL_S)
                self.messages.guard(self.refresh)()
            except Exception as exc:  # noqa: BLE001 - no LFW, a failed computation: say so once
                self.messages.error(exc)
            finally:
                self._waiting.discard(model)

        threading.Thread(target=poll, daemon=True).start()
