"""What the Benchmark tab asks of a run, answered by DuckDB in a few rows each (never the table whole).

    t = RunTables("runs/cqa-lfw")
    b = score_bins(t)                       # genuine / impostor counts per score bin
    far, frr, tar, thr = error_rates(b)     # ROC and DET from the bins
    errors_page(t, "false accept", sort=[("correct_margin", False)], offset=0, limit=50)
    accuracy_by_alignment(t)                # "mtcnn", "center", "mtcnn + center", ...
    paired_scores("runs/a", "runs/b")       # score A against score B per pair (evenly thinned)
    runs_in("~/.cache/cqa-face/runs")       # the run folders under a folder, newest first

Curves come from score bins (``SELECT bin, same, count(*) ... GROUP BY``): a million-pair run
costs one scan and a few hundred numbers. Sorting and filtering of the error table follow the
grid's own transforms (ipydatagrid's ``{"type": "sort" | "filter", "column", ...}``), turned into
SQL on the whole run, with values passed as parameters and columns checked against the table.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cqa_core.evaluation.runs.compare import same_pairs
from cqa_core.evaluation.runs.store import RUN_FILE, Run, RunError, sql_path
from cqa_core.evaluation.runs.tables import RunTables

KINDS = {"errors": "NOT correct", "false accept": "outcome = 'false accept'",
         "false reject": "outcome = 'false reject'", "all pairs": "TRUE"}
"""The error table's row sets, as SQL conditions."""
GRID_COLUMNS = ("pair_id", "outcome", "correct_margin", "score", "threshold", "identity1", "identity2",
                "pair_quality", "quality_decile", "edit", "edited_side", "align1", "align2", "fold", "path1", "path2")
"""The pairs-table columns the error table shows (``path1`` / ``path2`` become thumbnails)."""
OPERATORS = {"<": "<", ">": ">", "=": "=", "<=": "<=", ">=": ">=", "!=": "<>"}


@dataclass
class ScoreBins:
    """Genuine and impostor pair counts per score bin: bin ``i`` holds scores in [edges[i], edges[i+1])."""

    edges: np.ndarray  # (B + 1,)
    genuine: np.ndarray  # (B,)
    impostor: np.ndarray  # (B,)
    threshold: float  # the run's mean fold threshold


def runs_in(folder: str | os.PathLike) -> list[Path]:
    """Run folders (holding ``run.json``) directly under ``folder``, newest first; [] when it is absent."""
    root = Path(folder).expanduser()
    if not root.is_dir():
        return []
    found = [p for p in root.iterdir() if (p / RUN_FILE).is_file()]
    return sorted(found, key=lambda p: ((p / RUN_FILE).stat().st_mtime, p.name), reverse=True)


def score_bins(t: RunTables, bins: int = 200) -> ScoreBins:
    """Counts of genuine and impostor scores in ``bins`` equal bins over the run's score range."""
    lo, hi, thr = t.con.execute("SELECT min(score), max(score), avg(threshold) FROM pairs").fetchall()[0]
    if lo is None:
        raise RunError(f"{t.run.folder} has no pairs")
    hi = hi if hi > lo else lo + 1e-6
    width = (hi - lo) / bins
    rows = t.con.execute(
        f"SELECT least(CAST(floor((score - ?) / ?) AS INTEGER), {bins - 1}) AS b, same, count(*) "
        "FROM pairs GROUP BY 1, 2", [lo, width]).fetchall()
    genuine, impostor = np.zeros(bins, np.int64), np.zeros(bins, np.int64)
    for b, same, n in rows:
        (genuine if same else impostor)[int(b)] += int(n)
    return ScoreBins(lo + width * np.arange(bins + 1), genuine, impostor, float(thr))


def error_rates(b: ScoreBins) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(FAR, FRR, TAR, threshold) at each bin's lower edge, accepting scores >= the edge.

    FAR = impostors at or above / impostors; FRR = genuines below / genuines; TAR = 1 - FRR.
    """
    g_above = np.cumsum(b.genuine[::-1])[::-1]  # (B,) genuine scores >= edges[i]
    i_above = np.cumsum(b.impostor[::-1])[::-1]  # (B,)
    far = i_above / max(int(b.impostor.sum()), 1)
    tar = g_above / max(int(b.genuine.sum()), 1)
    return far, 1.0 - tar, tar, b.edges[:-1]


def _grid_where(t: RunTables, kind: str, filters: list[dict[str, Any]]) -> tuple[str, list[Any]]:
    """SQL condition of a row set and the grid's filter transforms (unknown columns refused)."""
    if kind not in KINDS:
        raise RunError(f"no row set {kind!r}; choose from {', '.join(KINDS)}")
    terms, params = [KINDS[kind]], []
    for f in filters:
        col, op, value = f.get("column"), f.get("operator"), f.get("value")
        if col not in t.columns:
            raise RunError(f"no column {col!r} in the pairs table")
        c = f'"{col}"'
        if op in OPERATORS:
            terms.append(f"{c} {OPERATORS[op]} ?")
            params.append(value)
        elif op == "between":
            terms.append(f"{c} BETWEEN ? AND ?")
            params += [value[0], value[1]]
        elif op == "in":
            values = list(value) or [None]
            terms.append(f"{c} IN ({', '.join('?' * len(values))})")
            params += values
        elif op in ("contains", "stringContains", "startswith", "endswith", "!contains"):
            pattern = {"startswith": "{}%", "endswith": "%{}"}.get(op, "%{}%").format(str(value))
            terms.append(f"CAST({c} AS VARCHAR) {'NOT ' if op == '!contains' else ''}LIKE ?")
            params.append(pattern)
        elif op in ("empty", "notempty"):
            terms.append(f"{c} IS {'NOT ' if op == 'notempty' else ''}NULL")
        else:
            raise RunError(f"the filter {op!r} is not supported on the whole run")
    return " WHERE " + " AND ".join(f"({x})" for x in terms), params


def errors_count(t: RunTables, kind: str = "errors", filters: list[dict[str, Any]] | None = None) -> int:
    """Pairs of the row set ``kind`` (see :data:`KINDS`) that pass the grid's filters."""
    cond, params = _grid_where(t, kind, filters or [])
    return int(t.con.execute(f"SELECT count(*) FROM pairs{cond}", params).fetchall()[0][0])


def errors_page(t: RunTables, kind: str = "errors", sort: list[tuple[str, bool]] | None = None,
                filters: list[dict[str, Any]] | None = None, offset: int = 0, limit: int = 50,
                columns: tuple[str, ...] = GRID_COLUMNS) -> dict[str, list[Any]]:
    """One page of the error table as columns (lists), worst margin first unless ``sort`` says otherwise.

    Args:
        t: the run's tables.
        kind: a row set of :data:`KINDS`.
        sort: (column, descending) keys, first wins; ``correct_margin`` ascending (worst first) when empty.
        filters: the grid's filter transforms (``column``, ``operator``, ``value``).
        offset: rows skipped.
        limit: rows returned.
        columns: pairs-table columns returned.
    """
    keys = list(sort or []) or [("correct_margin", False)]
    for col in [c for c, _ in keys] + list(columns):
        if col not in t.columns:
            raise RunError(f"no column {col!r} in the pairs table")
    cond, params = _grid_where(t, kind, filters or [])
    order = ", ".join(f'"{c}" {"DESC" if d else "ASC"}' for c, d in keys) + ", pair_id"
    cols = ", ".join(f'"{c}"' for c in columns)
    cur = t.con.execute(f"SELECT {cols} FROM pairs{cond} ORDER BY {order} LIMIT {int(limit)} OFFSET {int(offset)}",
                        params)
    rows = cur.fetchall()
    return {c: [r[i] for r in rows] for i, c in enumerate(columns)}


def accuracy_by_alignment(t: RunTables) -> list[dict[str, Any]]:
    """Accuracy per alignment of the pair: the method when both faces share it, else "A + B"."""
    cur = t.con.execute(
        "SELECT CASE WHEN align1 = align2 THEN align1 ELSE least(align1, align2) || ' + ' || greatest(align1, align2) "
        "END AS value, count(*) AS pairs, sum(CASE WHEN correct THEN 0 ELSE 1 END) AS errors, "
        "sum(CASE WHEN outcome = 'false accept' THEN 1 ELSE 0 END) AS false_accepts, "
        "sum(CASE WHEN outcome = 'false reject' THEN 1 ELSE 0 END) AS false_rejects, "
        "avg(CASE WHEN correct THEN 1.0 ELSE 0.0 END) AS accuracy FROM pairs GROUP BY 1 ORDER BY 1")
    names = [d[0] for d in cur.description]
    return [dict(zip(names, r, strict=True)) for r in cur.fetchall()]


def paired_scores(run_a: str | os.PathLike | Run, run_b: str | os.PathLike | Run,
                  max_points: int = 200_000) -> dict[str, np.ndarray]:
    """Per pair of two runs of the same pairs: ``pair_id``, ``score_a``, ``score_b``, ``same``, ``correct_a``,
    ``correct_b``; every pair up to ``max_points``, else every k-th pair (k the smallest that fits)."""
    import duckdb  # optional: the runs extra (the GPU image has no duckdb)

    a, b = (r if isinstance(r, Run) else Run(r) for r in (run_a, run_b))
    same_pairs(a, b)
    step = max(1, -(-int(a.meta.get("n_pairs") or 0) // max_points))
    con = duckdb.connect(":memory:")
    rows = con.execute(
        "SELECT a.pair_id, a.score, b.score, a.same, a.correct, b.correct "
        f"FROM read_parquet({sql_path(a.pairs_path)}) a JOIN read_parquet({sql_path(b.pairs_path)}) b USING (pair_id) "
        f"WHERE a.pair_id % {step} = 0 ORDER BY a.pair_id").fetchnumpy()
    names = ("pair_id", "score_a", "score_b", "same", "correct_a", "correct_b")
    return {n: np.asarray(rows[k]) for n, k in zip(names, rows, strict=True)}


def face_errors(t: RunTables, face_ids: np.ndarray) -> np.ndarray:
    """Per face of ``face_ids``: the number of the run's wrong pairs it is in."""
    cur = t.con.execute("SELECT f, count(*) FROM (SELECT face1 AS f FROM pairs WHERE NOT correct UNION ALL "
                        "SELECT face2 FROM pairs WHERE NOT correct) GROUP BY f")
    counts = dict(cur.fetchall())
    return np.array([counts.get(int(f), 0) for f in np.asarray(face_ids).tolist()], np.int64)


def faces_rows(t: RunTables, face_ids: np.ndarray, columns: tuple[str, ...] = ("face_id", "path", "identity", "quality",
                                                                                 "alignment")) -> dict[str, list[Any]]:
    """The rows of ``faces.parquet`` for ``face_ids`` (in that order)."""
    ids = [int(i) for i in np.asarray(face_ids).tolist()]
    cols = ", ".join(f'"{c}"' for c in columns)
    got = {r[0]: r for r in t.con.execute(f"SELECT face_id, {cols} FROM faces WHERE face_id IN "
                                          "(SELECT unnest(?))", [ids]).fetchall()}
    return {c: [got[i][k + 1] for i in ids] for k, c in enumerate(columns)}
