"""A ``cqa audit`` Parquet file as a viewer reads it: its rows, an order over them, each row's face.

Torch-free (the import-linter contract for viewer kernels lists this module): the dashboard's audit
browser opens a file, ranks its faces and shows their crops without loading torch. Writing an audit
(running the model) is :mod:`cqa_core.evaluation.audit`; naming a dataset's faces is
:mod:`cqa_core.evaluation.audit_source`.

A face is named by the file's metadata (``kind`` "folder" or "recordio", ``root``) and its row's
``path`` (a path relative to the folder, or ``key:N`` for a RecordIO record).
"""

from __future__ import annotations

import functools
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from cqa_core.data.imageio import decode_image
from cqa_core.data.recordfile import RecordReader, unpack

META_KEY = b"cqa_audit"
"""Key of the Parquet schema metadata that holds an audit's JSON (source kind and root, model...)."""


def pyarrow() -> tuple[Any, Any]:
    """(pyarrow, pyarrow.parquet), or an ImportError that says how to install them."""
    try:
        import pyarrow as pa  # optional: the audit extra
        import pyarrow.parquet as pq  # optional: the audit extra
    except ImportError as exc:
        raise ImportError("cqa audit writes Parquet and needs pyarrow: pip install 'cqa-face[audit]'") from exc
    return pa, pq


def read_audit(path: str | os.PathLike) -> tuple[dict[str, np.ndarray], dict]:
    """An audit file as {column: (N,) numpy array} and its metadata dict (kind, root, model...)."""
    _, pq = pyarrow()
    p = Path(path).expanduser()
    if not p.is_file():
        raise FileNotFoundError(f"audit file not found: {p}")
    try:
        table = pq.read_table(str(p))
    except Exception as exc:  # pyarrow raises its own ArrowInvalid for non-Parquet files
        raise ValueError(f"{p} is not a Parquet audit file ({type(exc).__name__})") from exc
    raw = (table.schema.metadata or {}).get(META_KEY)
    if raw is None:
        raise ValueError(f"{p} is a Parquet file but not a cqa audit (no {META_KEY.decode()} metadata)")
    return {name: table.column(name).to_numpy(zero_copy_only=False) for name in table.column_names}, json.loads(raw)


def rank_faces(cols: dict[str, np.ndarray], column: str, highest: bool = False) -> np.ndarray:
    """Row indices ordered by ``column``, lowest first (``highest``: highest first); ties by row."""
    if column not in cols:
        raise ValueError(f"the audit has no column {column!r}; it has {', '.join(cols)}")
    v = np.asarray(cols[column], dtype=np.float64)  # (N,)
    return np.argsort(-v if highest else v, kind="stable")  # (N,)


def face_image(kind: str, root: str, path: str) -> np.ndarray:
    """The aligned face a row of an audit names: (112, 112, 3) uint8 RGB, read from its source.

    Args:
        kind: the audit's source kind, "folder" or "recordio".
        root: the folder, or the RecordIO prefix (``root.rec`` / ``root.idx``).
        path: the row's ``path``: relative to the folder, or ``key:N``.

    Raises:
        OSError: the file is gone. KeyError: the RecordIO index has no such key.
        ValueError: an unknown kind, or bytes that are not an image (an ``ImageError``).
    """
    if kind == "folder":
        data = (Path(root) / path).read_bytes()
    elif kind == "recordio":
        data = unpack(_reader(root).read(int(path.removeprefix("key:"))))[1]
    else:
        raise ValueError(f"unknown audit source kind {kind!r}")
    return decode_image(data, name=f"{root}:{path}")  # (H, W, 3) uint8 RGB


@functools.lru_cache(maxsize=4)
def _reader(prefix: str) -> RecordReader:
    return RecordReader(prefix)  # parses the .idx once per browsing session
