"""The Benchmark tab's error table: one page of a run's pairs in an ipydatagrid, worst margin first.

The grid holds one page (:data:`PAGE` rows) fetched from DuckDB (``runs.browse.errors_page``);
its column menus sort and filter, and those transforms are re-run as SQL on the whole run, so a
sort by score is a sort of every pair, not of the page. A click on a row hands the pair to
``on_open`` (the dashboard opens it in the Pair tab). Both faces are shown as thumbnails.
"""

from __future__ import annotations

import base64
import functools
import io
import os
from collections.abc import Callable
from typing import Any

import ipywidgets as W
import numpy as np
import pandas as pd
from ipydatagrid import DataGrid, ImageRenderer
from PIL import Image

from cqa_core.data.imageio import load_image
from cqa_core.evaluation.runs.browse import GRID_COLUMNS, KINDS, errors_count, errors_page
from cqa_core.evaluation.runs.tables import RunTables

PAGE = 50
THUMB = 48
SHOWN = tuple(c for c in GRID_COLUMNS if c not in ("path1", "path2"))
"""The grid's data columns after the two thumbnails (``photo1``, ``photo2``)."""


@functools.lru_cache(maxsize=4096)
def thumbnail(path: str, size: int = THUMB) -> str:
    """A JPEG data URL of the photo's centre (where an LFW-framed face is), ``size`` px; '' if unreadable."""
    if not path or not os.path.isfile(path):
        return ""
    try:
        photo = load_image(path)  # (H, W, 3)
    except (OSError, ValueError):
        return ""
    h, w = photo.shape[:2]
    s = int(min(h, w) * 0.6)
    crop = photo[(h - s) // 2:(h + s) // 2, (w - s) // 2:(w + s) // 2]  # (s, s, 3)
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(crop)).resize((size, size), Image.BILINEAR).save(buf, "JPEG", quality=80)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode()


def page_frame(rows: dict[str, list[Any]]) -> pd.DataFrame:
    """The grid's data: thumbnails first, then :data:`SHOWN` (numbers rounded for reading)."""
    df = pd.DataFrame({"photo1": [thumbnail(p) for p in rows["path1"]],
                       "photo2": [thumbnail(p) for p in rows["path2"]]})
    for c in SHOWN:
        v = rows[c]
        df[c] = np.round(np.asarray(v, np.float64), 4) if c in ("correct_margin", "score", "threshold",
                                                                 "pair_quality") else v
    df.index.name = "row"
    return df


class ErrorTable:
    """A paged, sortable, filterable grid of one run's pairs (false accepts and rejects by default)."""

    def __init__(self, on_open: Callable[[dict[str, Any]], None], guard: Callable, page: int = PAGE) -> None:
        """``on_open(row)``: called with the clicked pair's row (every :data:`GRID_COLUMNS`)."""
        self.on_open, self.size = on_open, page
        self.tables: RunTables | None = None
        self.offset, self.total = 0, 0
        self.sort: list[tuple[str, bool]] = []
        self.filters: list[dict[str, Any]] = []
        self.rows: dict[str, list[Any]] = {c: [] for c in GRID_COLUMNS}
        self.kind = W.ToggleButtons(options=list(KINDS), value="errors", description="pairs")
        self.kind.add_class("cqa-bench-kind")
        self.prev, self.next = W.Button(description="previous 50"), W.Button(description="next 50")
        self.where = W.HTML("")
        self.where.add_class("cqa-bench-page")
        images = ImageRenderer(height="100%", width="")
        self.grid = DataGrid(page_frame({c: [] for c in GRID_COLUMNS}), selection_mode="row", base_row_size=52,
                             base_column_size=96, renderers={"photo1": images, "photo2": images},
                             column_widths={"photo1": 56, "photo2": 56, "identity1": 150, "identity2": 150,
                                            "outcome": 100}, layout=W.Layout(height="430px", width="100%"))
        self.grid.add_class("cqa-bench-grid")
        self.grid.on_cell_click(guard(self._on_click))
        self.grid.observe(guard(self._on_transforms), names="_transforms")
        self.kind.observe(guard(lambda _: self.load(0)), names="value")
        self.prev.on_click(guard(lambda _: self.load(max(0, self.offset - self.size))))
        self.next.on_click(guard(lambda _: self.load(self.offset + self.size)))
        note = W.HTML("<small>click a row to open the pair in the Pair tab; the column menus sort and filter "
                      "every pair of the run</small>")
        self.widget = W.VBox([self.kind, note, self.grid, W.HBox([self.prev, self.next, self.where])])
        self.widget.add_class("cqa-bench-table")

    def show_run(self, tables: RunTables) -> None:
        """Show a run's first page (sort and filters kept when their columns exist)."""
        self.tables = tables
        self.load(0)

    def load(self, offset: int) -> None:
        """Fetch the page at ``offset`` and draw it."""
        if self.tables is None:
            return
        self.total = errors_count(self.tables, self.kind.value, self.filters)
        self.offset = min(offset, max(0, (self.total - 1) // self.size * self.size))
        self.rows = errors_page(self.tables, self.kind.value, self.sort, self.filters, self.offset, self.size)
        self.grid.data = page_frame(self.rows)
        n = len(self.rows["pair_id"])
        self.where.value = (f"rows {self.offset + 1 if n else 0}-{self.offset + n} of "
                            f"<b class='cqa-bench-total'>{self.total}</b> ({self.kind.value})")
        self.prev.disabled = self.offset == 0
        self.next.disabled = self.offset + n >= self.total

    def row(self, i: int) -> dict[str, Any]:
        """Row ``i`` of the current page as a dict."""
        return {c: self.rows[c][i] for c in GRID_COLUMNS}

    def open_row(self, i: int) -> None:
        """Open row ``i`` of the current page (what a click does)."""
        self.on_open(self.row(i))

    def _on_click(self, cell: dict[str, Any]) -> None:
        if cell.get("region") != "body" or cell.get("primary_key_row") is None:
            return
        self.open_row(int(cell["primary_key_row"]))

    def _on_transforms(self, change: dict[str, Any]) -> None:
        """The grid's sort / filter menus: the same query on the whole run, from its first page."""
        columns = set(GRID_COLUMNS)
        ts = [t for t in change["new"] if t.get("column") in columns]
        self.sort = [(t["column"], bool(t.get("desc", False))) for t in ts if t.get("type") == "sort"]
        self.filters = [t for t in ts if t.get("type") == "filter"]
        self.load(0)
