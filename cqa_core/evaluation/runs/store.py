"""A run is a folder: ``run.json``, ``pairs.parquet``, ``faces.parquet``, ``embeddings.npy``.

* ``run.json``: the aggregates ``cqa eval`` prints, the model (name, kind, weights digest), data,
  protocol, options, the thresholds per fold, date, machine, duration, the pair list's digest;
* ``pairs.parquet``: one row per pair (:data:`PAIR_COLUMNS`);
* ``faces.parquet``: one row per face scored (:data:`FACE_COLUMNS`); ``face_id`` is its row in
  ``embeddings.npy`` and what ``face1`` / ``face2`` of a pair point at;
* ``embeddings.npy``: (F, D) float16, opened as a memmap (:meth:`Run.embeddings`).

The tables are written in row groups of :data:`ROW_GROUP` rows, so DuckDB and pyarrow read a
filtered slice without loading a table whole (``runs.tables``). ``run.json`` is written last: a
folder that has it is a complete run.
"""

from __future__ import annotations

import importlib
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

RUN_FILE, PAIRS_FILE, FACES_FILE, EMBEDDINGS_FILE = "run.json", "pairs.parquet", "faces.parquet", "embeddings.npy"
FORMAT = 1
ROW_GROUP = 131_072
PAIR_COLUMNS = {
    "pair_id": "position of the pair in the pair list (0-based)",
    "face1": "face_id of the first face (faces.parquet, embeddings.npy row)", "face2": "likewise, second face",
    "path1": "photo of the first face", "path2": "photo of the second face",
    "identity1": "person of the first face", "identity2": "person of the second face",
    "same": "the faces are of the same person", "fold": "cross-validation fold",
    "score": "cosine similarity", "threshold": "the fold's threshold (chosen on the other folds)",
    "predicted": "score >= threshold (called 'same')", "correct": "predicted == same",
    "outcome": "true accept | true reject | false accept | false reject",
    "margin": "score - threshold", "correct_margin": "margin on the correct side (negative: an error; lowest = worst)",
    "edit": "the protocol's edit (none, mask KIND, DEGRADATION SEVERITY)",
    "edited_side": "which faces the protocol edits: none | second | both",
    "edit1": "what was done to the first face (mask kind drawn, degradation)", "edit2": "likewise, second face",
    "quality1": "quality of the first face (quality_kind)", "quality2": "quality of the second face",
    "quality_kind": "qan (overall QAN quality) | norm (embedding L2 norm)",
    "pair_quality": "the lower of the two qualities",
    "quality_decile": "1 (lowest pair_quality tenth of the run) .. 10",
    "align1": "alignment method of the first face (mtcnn, center, given)", "align2": "likewise, second face",
}
FACE_COLUMNS = {
    "face_id": "row in embeddings.npy", "image": "image index in the pair list", "path": "photo",
    "identity": "person", "edit": "what was done to the face", "seed": "edit seed (-1: clean)",
    "quality": "quality (quality_kind)", "quality_kind": "qan | norm", "norm": "embedding L2 norm",
    "alignment": "alignment method", "branch_quality": "QAN S_hat_i per branch (recognizers with branches)",
    "cal": "CAL penalty of the face (recognizers with branches)",
}


def runs_extra(module: str) -> Any:
    """A module of the ``runs`` extra (pyarrow, duckdb, scipy, scikit-learn), imported when a run needs it.

    Imported here and not at the top: they are optional (the GPU image has none of them), and a
    missing one is one line saying how to install it.
    """
    try:
        return importlib.import_module(module)
    except ImportError:
        raise ImportError(f"{module} is not installed: benchmark runs need pip install 'cqa-face[runs]'") from None


def sql_path(path: os.PathLike | str) -> str:
    """A path as an SQL string literal (DuckDB's ``read_parquet``)."""
    return "'" + str(path).replace("'", "''") + "'"


class RunError(ValueError):
    """A folder that is not a run, or two runs that cannot be compared (one line)."""


def scored_columns(score: np.ndarray, same: np.ndarray, fold: np.ndarray, fold_thresholds: dict[int, float],
                   quality1: np.ndarray, quality2: np.ndarray) -> dict[str, np.ndarray]:
    """The per-pair columns a run derives from its scores, thresholds and face qualities."""
    score = np.asarray(score, np.float64)  # (N,)
    same = np.asarray(same, bool)  # (N,)
    folds = np.asarray(fold)
    keys = np.array(sorted(fold_thresholds))
    thr = np.asarray([fold_thresholds[k] for k in keys], np.float64)[np.searchsorted(keys, folds)]  # (N,)
    pred = score >= thr  # (N,)
    margin = score - thr  # (N,)
    outcome = np.where(same, np.where(pred, "true accept", "false reject"), np.where(pred, "false accept", "true reject"))
    pq = np.minimum(quality1, quality2).astype(np.float32)  # (N,)
    decile = np.empty(len(pq), np.int8)
    decile[np.argsort(pq, kind="stable")] = 1 + (np.arange(len(pq)) * 10) // max(len(pq), 1)
    return {"same": same, "fold": folds.astype(np.int16), "score": score, "threshold": thr, "predicted": pred,
            "correct": pred == same, "outcome": outcome, "margin": margin,
            "correct_margin": np.where(same, margin, -margin), "quality1": np.asarray(quality1, np.float32),
            "quality2": np.asarray(quality2, np.float32), "pair_quality": pq, "quality_decile": decile}


def write_table(path: Path, columns: dict[str, Any]) -> None:
    """A Parquet file of equal-length columns (numpy arrays, lists; 2-D arrays become list columns)."""
    pa, pq = runs_extra("pyarrow"), runs_extra("pyarrow.parquet")
    arrays = {}
    for name, col in columns.items():
        a = np.asarray(col) if not isinstance(col, list) else col
        if isinstance(a, np.ndarray) and a.ndim == 2:
            a = pa.FixedSizeListArray.from_arrays(pa.array(a.reshape(-1)), a.shape[1])
        arrays[name] = a
    tmp = path.with_name(f".{path.name}.tmp")
    pq.write_table(pa.table(arrays), tmp, row_group_size=ROW_GROUP, compression="zstd")
    os.replace(tmp, path)


def write_run(folder: str | os.PathLike, meta: dict[str, Any], pairs: dict[str, Any], faces: dict[str, Any],
              embeddings: np.ndarray) -> Path:
    """Write a run folder (created; an older run in it is replaced). Returns the folder."""
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    (out / RUN_FILE).unlink(missing_ok=True)  # incomplete until written again, last
    write_table(out / PAIRS_FILE, pairs)
    write_table(out / FACES_FILE, faces)
    tmp = out / f".{EMBEDDINGS_FILE}.tmp"
    with open(tmp, "wb") as f:
        np.save(f, np.asarray(embeddings, np.float16))
    os.replace(tmp, out / EMBEDDINGS_FILE)
    (out / RUN_FILE).write_text(json.dumps({"format": FORMAT, **meta}, indent=2))
    return out


class Run:
    """An opened run folder: its ``run.json`` and the paths of its tables (nothing else is read)."""

    def __init__(self, folder: str | os.PathLike) -> None:
        self.folder = Path(folder)
        if not (self.folder / RUN_FILE).is_file():
            raise RunError(f"not a run folder: {self.folder} (no {RUN_FILE}; write one with cqa eval --out DIR)")
        try:
            self.meta: dict[str, Any] = json.loads((self.folder / RUN_FILE).read_text())
        except json.JSONDecodeError as exc:
            raise RunError(f"{self.folder / RUN_FILE} is not valid JSON ({exc.msg})") from None
        for name in (PAIRS_FILE, FACES_FILE):
            if not (self.folder / name).is_file():
                raise RunError(f"{self.folder} lacks {name}")

    @property
    def pairs_path(self) -> Path:
        return self.folder / PAIRS_FILE

    @property
    def faces_path(self) -> Path:
        return self.folder / FACES_FILE

    @property
    def label(self) -> str:
        """"model on data protocol", as the CLI prints a run."""
        m = self.meta
        return f"{m['model']['name']} on {m['data']} {m['protocol']}"

    def embeddings(self) -> np.ndarray:
        """(F, D) float16 memmap of the face embeddings (row = ``face_id``)."""
        return np.load(self.folder / EMBEDDINGS_FILE, mmap_mode="r")
