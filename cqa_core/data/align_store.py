"""An on-disk alignment cache keyed by photo content: MTCNN runs once per photo, ever.

    store = AlignmentStore()                    # ~/.cache/cqa-face/aligned-v2/by-hash/alignment.csv
    face = store.align(photo, sha1_of_file)     # MTCNN on a miss (~0.5 s on a CPU), a warp on a hit

Rows use ``cqa align``'s ``alignment.csv`` columns (:data:`cqa_core.data.align_run.ALIGN_FIELDS`)
with ``path`` = the sha1 of the photo's bytes and ``out`` empty (no crop file is kept: re-warping
from the stored landmarks takes ~0.1 ms). A hit is re-fitted from the landmarks with the current
fit (``align_run.refit``), so it is exactly what a fresh detection would give. Rows are appended
one line at a time (O_APPEND), so kernels and the analysis service can share one file; the
folder's name carries ``ALIGN_VERSION``, so crops of another alignment version never mix. The
first read of a store that already holds rows says so in one line on stderr (once per process).
"""

from __future__ import annotations

import csv
import io
import os
import threading
from pathlib import Path
from typing import Any

import numpy as np

from cqa_core.data import cache_place
from cqa_core.data.align import ALIGN_VERSION, SIZE, align_image
from cqa_core.data.align_run import ALIGN_FIELDS, face_row, refit
from cqa_core.data.reuse import say_reused


def align_key(detector: Any) -> str:
    """What goes into a cache key for an alignment: the detector's kind and settings."""
    if detector is None:
        return f"mtcnn-v{ALIGN_VERSION}"
    key = getattr(detector, "cache_key", None)
    if key:
        return str(key)
    settings = {k: getattr(detector, k) for k in ("thresholds", "min_face_size", "factor") if hasattr(detector, k)}
    return f"{type(detector).__module__}.{type(detector).__qualname__}{settings}-v{ALIGN_VERSION}"


class AlignmentStore:
    """photo sha1 -> landmarks / affine / method, appended to one ``alignment.csv``."""

    def __init__(self, root: str | os.PathLike | None = None, cache: str | os.PathLike | None = None) -> None:
        """``root``: the store's folder; else ``<cache>/aligned-v<ALIGN_VERSION>/by-hash`` (``cache``
        default: ``Settings.cache_root``'s default; an entry point passes its own)."""
        base = cache_place(cache)
        self.root = Path(root) if root else base / f"aligned-v{ALIGN_VERSION}" / "by-hash"
        self.path = self.root / "alignment.csv"
        self._rows: dict[str, dict[str, str]] = {}
        self._read_size = 0
        self._wrote = False  # this store appended a row (then its first read reuses nothing older)
        self._lock = threading.Lock()

    def _refresh(self) -> None:
        """Read rows appended since the last look (by this or another process)."""
        if not self.path.exists() or self.path.stat().st_size == self._read_size:
            return
        with open(self.path, newline="") as f:
            text = f.read()
        first = self._read_size == 0 and not self._wrote  # rows an earlier process stored
        self._read_size = len(text.encode())
        for row in csv.DictReader(io.StringIO(text)):
            if row.get("path") and row.get("a12"):  # a half-written last line has no affine yet
                self._rows[row["path"]] = row
        if first and self._rows:  # one line per process: this store is read at every request
            say_reused("the alignment store", self.path, [f"{len(self._rows):,} photos' landmarks"],
                       built=self.path, once=True)

    def get(self, digest: str) -> dict[str, str] | None:
        with self._lock:
            if digest not in self._rows:
                self._refresh()
            return self._rows.get(digest)

    def put(self, digest: str, face: Any) -> None:
        row = face_row(face, digest, "")
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=ALIGN_FIELDS)
        with self._lock:
            self.root.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                if os.fstat(fd).st_size == 0:
                    writer.writeheader()
                writer.writerow(row)
                os.write(fd, buf.getvalue().encode())
            finally:
                os.close(fd)
            self._rows[digest] = {k: str(v) for k, v in row.items()}
            self._wrote = True

    def __len__(self) -> int:
        with self._lock:
            self._refresh()
            return len(self._rows)

    def align(self, photo: np.ndarray, digest: str, detector: Any = None) -> Any:
        """The MTCNN ``AlignedFace`` of ``photo`` (``detector`` None) from the store, or detected and stored.

        Only the default MTCNN alignment of a photo is stored; any other detector is run as given,
        and a 112 x 112 input (already aligned, e.g. a Mask lab edit) is taken as it is.
        """
        if detector is not None or photo.shape[:2] == (SIZE, SIZE):  # other detectors, or an aligned crop
            return align_image(photo, detector=detector, fallback="center")
        row = self.get(digest)
        if row is not None:
            return refit(photo, row)
        face = align_image(photo, fallback="center")
        self.put(digest, face)
        return face
