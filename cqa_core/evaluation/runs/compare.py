"""Two runs on the same pairs, pair by pair: the 2 x 2 table, McNemar's exact test, per-fold differences.

    c = compare_runs("runs/cqa-lfw", "runs/dlib-lfw")
    c.table            # {"both right": .., "only A right": .., "only B right": .., "both wrong": ..}
    c.p_value          # McNemar's exact test on the disagreements (scipy.stats.binomtest)
    c.only_a_right     # pairs A gets right and B wrong, B's worst margin first

McNemar's exact test: under "both recognizers err alike", each of the n = b + c pairs they disagree
on is a fair coin (b: only A right, c: only B right), so the two-sided p-value is that of a
binomial test of b successes in n trials with p = 1/2 (scipy's ``binomtest``). The pairs must be
the same pairs in the same order: both runs' ``pairs_digest`` (keys of both images, label, fold)
must match, or :func:`compare_runs` refuses with one line.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from cqa_core.evaluation.runs.store import Run, RunError, runs_extra, sql_path

DISAGREEMENT_COLUMNS = ("pair_id", "path1", "path2", "same", "fold", "score_a", "score_b", "margin_a", "margin_b",
                        "outcome_a", "outcome_b")


@dataclass
class Comparison:
    """What :func:`compare_runs` finds (A and B are the two runs)."""

    a: str
    b: str
    accuracy_a: float
    accuracy_b: float
    table: dict[str, int]
    p_value: float
    folds: list[dict[str, Any]]
    only_a_right: list[dict[str, Any]] = field(repr=False)
    only_b_right: list[dict[str, Any]] = field(repr=False)

    def to_dict(self) -> dict[str, Any]:
        return {"a": self.a, "b": self.b, "accuracy_a": self.accuracy_a, "accuracy_b": self.accuracy_b,
                "table": self.table, "mcnemar_exact_p": self.p_value, "folds": self.folds,
                "only_a_right": self.only_a_right, "only_b_right": self.only_b_right}


def mcnemar_exact(only_a: int, only_b: int) -> float:
    """Two-sided exact McNemar p-value of the disagreement counts (1.0 when they never disagree)."""
    binomtest = runs_extra("scipy.stats").binomtest
    n = only_a + only_b
    return 1.0 if n == 0 else float(binomtest(only_a, n, 0.5, alternative="two-sided").pvalue)


def same_pairs(a: Run, b: Run) -> None:
    """Raise a one-line RunError unless both runs scored the same pair list."""
    da, db = a.meta.get("pairs_digest"), b.meta.get("pairs_digest")
    if da != db or a.meta.get("n_pairs") != b.meta.get("n_pairs"):
        raise RunError(f"the runs scored different pair lists ({a.meta['data']} {a.meta.get('n_pairs')} pairs, "
                       f"digest {da}; {b.meta['data']} {b.meta.get('n_pairs')} pairs, digest {db}): "
                       "compare runs of the same --data and --limit")


def compare_runs(run_a: str | os.PathLike | Run, run_b: str | os.PathLike | Run) -> Comparison:
    """Compare two runs of the same pairs (see the module docstring)."""
    duckdb = runs_extra("duckdb")
    a, b = (r if isinstance(r, Run) else Run(r) for r in (run_a, run_b))
    same_pairs(a, b)
    con = duckdb.connect(":memory:")
    con.execute(
        "CREATE VIEW j AS SELECT a.pair_id, a.path1, a.path2, a.same, a.fold, a.score AS score_a, b.score AS score_b, "
        "a.correct_margin AS margin_a, b.correct_margin AS margin_b, a.outcome AS outcome_a, b.outcome AS outcome_b, "
        f"a.correct AS ca, b.correct AS cb FROM read_parquet({sql_path(a.pairs_path)}) a "
        f"JOIN read_parquet({sql_path(b.pairs_path)}) b USING (pair_id)")
    n11, n10, n01, n00 = con.execute(
        "SELECT sum(CASE WHEN ca AND cb THEN 1 ELSE 0 END), sum(CASE WHEN ca AND NOT cb THEN 1 ELSE 0 END), "
        "sum(CASE WHEN cb AND NOT ca THEN 1 ELSE 0 END), sum(CASE WHEN NOT ca AND NOT cb THEN 1 ELSE 0 END) FROM j"
    ).fetchall()[0]
    table = {"both right": int(n11), "only A right": int(n10), "only B right": int(n01), "both wrong": int(n00)}
    folds = [{"fold": int(f), "pairs": int(n), "accuracy_a": float(x), "accuracy_b": float(y), "difference": float(x - y)}
             for f, n, x, y in con.execute(
                 "SELECT fold, count(*), avg(CASE WHEN ca THEN 1.0 ELSE 0.0 END), avg(CASE WHEN cb THEN 1.0 ELSE 0.0 END) "
                 "FROM j GROUP BY fold ORDER BY fold").fetchall()]
    cols = ", ".join(DISAGREEMENT_COLUMNS)

    def rows(cond: str, worst: str) -> list[dict[str, Any]]:
        cur = con.execute(f"SELECT {cols} FROM j WHERE {cond} ORDER BY {worst} ASC, pair_id")
        return [dict(zip(DISAGREEMENT_COLUMNS, r, strict=True)) for r in cur.fetchall()]

    return Comparison(a.label, b.label, float(a.meta["accuracy"]), float(b.meta["accuracy"]), table,
                      mcnemar_exact(table["only A right"], table["only B right"]), folds,
                      rows("ca AND NOT cb", "margin_b"), rows("cb AND NOT ca", "margin_a"))
