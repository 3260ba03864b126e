"""Queries on a run's tables with DuckDB: filtered, sorted, paged, never loaded whole.

    t = RunTables("runs/cqa-lfw")
    t.count(errors=True, where={"quality_decile": 1})             # errors among the lowest-quality tenth
    t.page(errors=True, where={"quality_decile": 1}, order_by="correct_margin", offset=0, limit=50)
    t.pair(17)                                                    # one pair with both faces' rows
    t.accuracy_by("quality_decile")                               # accuracy per decile / mask / alignment

DuckDB reads only the columns and row groups a query needs from ``pairs.parquet`` and
``faces.parquet``. Filters name columns of the table (checked) and pass values as parameters.
Results come back as pyarrow tables (``page``) or plain dicts.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from cqa_core.evaluation.runs.store import Run, RunError, runs_extra, sql_path

ERRORS = "NOT correct"


class RunTables:
    """A DuckDB connection with the views ``pairs`` and ``faces`` of one run."""

    def __init__(self, run: Run | str | os.PathLike, threads: int | None = None) -> None:
        duckdb = runs_extra("duckdb")
        self.run = run if isinstance(run, Run) else Run(run)
        self.con = duckdb.connect(":memory:")
        if threads:
            self.con.execute(f"SET threads TO {int(threads)}")
        self.con.execute(f"CREATE VIEW pairs AS SELECT * FROM read_parquet({sql_path(self.run.pairs_path)})")
        self.con.execute(f"CREATE VIEW faces AS SELECT * FROM read_parquet({sql_path(self.run.faces_path)})")
        self.columns = [r[0] for r in self.con.execute("DESCRIBE pairs").fetchall()]

    def _where(self, where: dict[str, Any] | None, errors: bool) -> tuple[str, list[Any]]:
        """SQL condition and parameters: ``{col: value}`` equality, a list is IN, a (lo, hi) tuple a range."""
        terms, params = ([ERRORS] if errors else []), []
        for col, v in (where or {}).items():
            if col not in self.columns:
                raise RunError(f"no column {col!r} in the pairs table; columns: {', '.join(self.columns)}")
            if isinstance(v, tuple):
                terms.append(f'"{col}" BETWEEN ? AND ?')
                params += list(v)
            elif isinstance(v, list):
                terms.append(f'"{col}" IN ({", ".join("?" * len(v))})')
                params += v
            else:
                terms.append(f'"{col}" = ?')
                params.append(v)
        return (" WHERE " + " AND ".join(terms)) if terms else "", params

    def count(self, where: dict[str, Any] | None = None, errors: bool = False) -> int:
        """Pairs matching the filter."""
        cond, params = self._where(where, errors)
        return int(self.con.execute(f"SELECT count(*) FROM pairs{cond}", params).fetchall()[0][0])

    def page(self, where: dict[str, Any] | None = None, errors: bool = False, order_by: str = "correct_margin",
             descending: bool = False, offset: int = 0, limit: int = 50, columns: list[str] | None = None) -> Any:
        """One page of pairs as a pyarrow table, sorted by ``order_by`` (default worst margin first)."""
        for col in [order_by, *(columns or [])]:
            if col not in self.columns:
                raise RunError(f"no column {col!r} in the pairs table; columns: {', '.join(self.columns)}")
        cond, params = self._where(where, errors)
        cols = ", ".join(f'"{c}"' for c in columns) if columns else "*"
        order = f'ORDER BY "{order_by}" {"DESC" if descending else "ASC"}, pair_id'
        ids = f"SELECT pair_id FROM pairs{cond} {order} LIMIT {int(limit)} OFFSET {int(offset)}"
        # the page's ids first (a few narrow columns), then only those rows' every column
        sql = f"SELECT {cols} FROM pairs WHERE pair_id IN ({ids}) {order}"
        rel = self.con.sql(sql, params=params)
        return rel.to_arrow_table() if hasattr(rel, "to_arrow_table") else rel.arrow()  # duckdb 2 / 1

    def pair(self, pair_id: int) -> dict[str, Any]:
        """One pair's row, with ``faces``: its two rows of ``faces.parquet`` (branch readings included)."""
        cur = self.con.execute("SELECT * FROM pairs WHERE pair_id = ?", [int(pair_id)])
        found = cur.fetchall()
        if not found:
            raise RunError(f"no pair {pair_id} in {self.run.folder}")
        out = dict(zip([d[0] for d in cur.description], found[0], strict=True))
        cur = self.con.execute("SELECT * FROM faces WHERE face_id IN (?, ?) ORDER BY face_id",
                               [out["face1"], out["face2"]])
        names = [d[0] for d in cur.description]
        faces = {r[0]: dict(zip(names, r, strict=True)) for r in cur.fetchall()}
        out["faces"] = [faces[out["face1"]], faces[out["face2"]]]
        return out

    def accuracy_by(self, column: str, where: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        """Per value of ``column``: pairs, errors, false accepts, false rejects, accuracy."""
        if column not in self.columns:
            raise RunError(f"no column {column!r} in the pairs table; columns: {', '.join(self.columns)}")
        cond, params = self._where(where, False)
        cur = self.con.execute(
            f'SELECT "{column}" AS value, count(*) AS pairs, sum(CASE WHEN correct THEN 0 ELSE 1 END) AS errors, '
            "sum(CASE WHEN outcome = 'false accept' THEN 1 ELSE 0 END) AS false_accepts, "
            "sum(CASE WHEN outcome = 'false reject' THEN 1 ELSE 0 END) AS false_rejects, "
            f'avg(CASE WHEN correct THEN 1.0 ELSE 0.0 END) AS accuracy FROM pairs{cond} GROUP BY 1 ORDER BY 1', params)
        names = [d[0] for d in cur.description]
        return [dict(zip(names, r, strict=True)) for r in cur.fetchall()]

    def fold_accuracy(self) -> list[tuple[int, int, int]]:
        """(fold, correct pairs, pairs) per fold, in fold order."""
        return [(int(f), int(c), int(n)) for f, c, n in self.con.execute(
            "SELECT fold, sum(CASE WHEN correct THEN 1 ELSE 0 END), count(*) FROM pairs GROUP BY fold ORDER BY fold"
        ).fetchall()]

    def accuracy(self) -> float:
        """The run's accuracy recomputed from its pairs: the mean over folds of each fold's accuracy."""
        accs = [float(c / n) for _, c, n in self.fold_accuracy()]
        return float(np.mean(accs))  # as metrics.evaluate_scores averages them
