"""AuditBrowser: the lowest-quality faces of a whole dataset, read from a ``cqa audit`` Parquet file.

Nothing is recomputed: rows come from the file and each face's crop from the dataset it names
(``cqa_core.evaluation.audit_table.face_image``). Torch-free: a viewer's kernel never loads torch.
"""

from __future__ import annotations

import ipywidgets as W
import numpy as np

from cqa_core.evaluation.audit_table import face_image, rank_faces, read_audit
from workbench.views.common import Messages, caption, image_widget, png
from workbench.views.markup import escape


class AuditBrowser:
    """Path box and Load; order by overall / branch quality, embedding norm or CAL penalty; k faces a page."""

    def __init__(self, messages: Messages, k: int = 12) -> None:
        self.messages, self.k = messages, k
        self.cols: dict[str, np.ndarray] = {}
        self.meta: dict = {}
        self._loading = False
        self.path = W.Text(placeholder="audit.parquet (from cqa audit DATASET --out ...)", description="audit file",
                           layout=W.Layout(width="460px"))
        self.load_button = W.Button(description="load")
        self.order = W.Dropdown(options=[], description="order by", layout=W.Layout(width="330px"))
        self.start = W.BoundedIntText(value=0, min=0, max=0, step=k, description="from rank")
        self.summary = caption("", "cqa-audit-summary")
        self.images = [image_widget(96, "cqa-audit-face") for _ in range(k)]
        self.titles = [caption("", "cqa-audit-title") for _ in range(k)]
        for im in self.images:
            im.layout.visibility = "hidden"
        cells = [W.VBox([t, im]) for t, im in zip(self.titles, self.images, strict=True)]
        self.widget = W.VBox([W.HBox([self.path, self.load_button]), self.summary, W.HBox([self.order, self.start]),
                              W.GridBox(cells, layout=W.Layout(grid_template_columns="repeat(6, 110px)"))])
        self.widget.add_class("cqa-audit")
        self.load_button.on_click(messages.guard(lambda _: self.load(self.path.value.strip())))
        self.order.observe(messages.guard(lambda _: self.show()), names="value")
        self.start.observe(messages.guard(lambda _: self.show()), names="value")

    def load(self, path: str) -> None:
        """Read an audit file and show its lowest overall-quality faces."""
        if not path:
            raise ValueError("type the path of an audit file (cqa audit DATASET --out FILE.parquet)")
        self.cols, self.meta = read_audit(path)
        n = len(self.cols["index"])
        branches = sorted(c for c in self.cols if c.startswith("quality_"))
        options = [("overall quality, lowest first", "overall_quality")]
        options += [(f"branch {c.split('_')[1]} quality, lowest first", c) for c in branches]
        options += [("embedding norm, lowest first", "embedding_norm"), ("CAL penalty, highest first", "-cal_penalty")]
        q = self.cols["overall_quality"]
        methods = {m: int((self.cols["align_method"] == m).sum()) for m in np.unique(self.cols["align_method"])}
        self.summary.value = escape(
            f"{n} faces of {self.meta.get('kind')} {self.meta.get('root')} ({self.meta.get('model_label')}); overall "
            f"quality min {q.min():.3f}, median {np.median(q):.3f}, max {q.max():.3f}; alignment {methods}")
        self._loading = True  # one redraw below, not one per widget change
        try:
            self.start.max, self.start.value = max(n - 1, 0), 0
            self.order.options = options
            self.order.value = "overall_quality"
        finally:
            self._loading = False
        self.show()

    def show(self) -> None:
        """Fill the k slots from rank ``start`` in the chosen order."""
        if self._loading or not self.cols or self.order.value is None:
            return
        column = self.order.value.lstrip("-")
        order = rank_faces(self.cols, column, highest=self.order.value.startswith("-"))
        rows = order[self.start.value:self.start.value + self.k]
        for slot, (title, image) in enumerate(zip(self.titles, self.images, strict=True)):
            if slot >= len(rows):
                title.value, image.layout.visibility = "", "hidden"
                continue
            r = int(rows[slot])
            c = self.cols
            title.value = (f"#{self.start.value + slot + 1} {escape(str(c['identity'][r]))}<br>"
                           f"{column.replace('_', ' ')}={c[column][r]:.3f}<br>q={c['overall_quality'][r]:.3f} "
                           f"norm={c['embedding_norm'][r]:.1f} {escape(str(c['align_method'][r]))}")
            try:
                image.value = png(face_image(self.meta["kind"], self.meta["root"], str(c["path"][r])), 96)
                image.layout.visibility = "visible"
            except (OSError, ValueError, KeyError) as exc:  # the dataset moved: say so under the numbers
                title.value += f"<br><i>crop unavailable: {escape(str(exc)[:60])}</i>"
                image.layout.visibility = "hidden"
