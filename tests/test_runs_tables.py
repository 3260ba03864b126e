"""DuckDB queries on a run's tables, checked against numpy on the same Parquet columns.

A synthetic run (``runs.synthetic``: the real layout, 3000 pairs) stands in for a recorded one;
every answer of :class:`RunTables` is recomputed here from the arrays themselves.
"""

from __future__ import annotations

import numpy as np
import pytest

from cqa_core.evaluation.runs.store import Run, RunError
from cqa_core.evaluation.runs.synthetic import synthetic_run

pq = pytest.importorskip("pyarrow.parquet", reason="the runs extra (pyarrow) is not installed")
pytest.importorskip("duckdb", reason="the runs extra (duckdb) is not installed")
from cqa_core.evaluation.runs.tables import RunTables  # noqa: E402  (needs duckdb at query time)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return synthetic_run(tmp_path_factory.mktemp("runs") / "synth", pairs=3000, faces=800, seed=3)


@pytest.fixture(scope="module")
def cols(run):
    return {k: np.array(v) for k, v in pq.read_table(run / "pairs.parquet").to_pydict().items()}


def test_errors_of_the_lowest_decile_worst_margin_first_paged(run, cols):
    t = RunTables(run)
    want = np.flatnonzero(~cols["correct"] & (cols["quality_decile"] == 1))
    assert len(want) > 0 and t.count({"quality_decile": 1}, errors=True) == len(want)
    order = want[np.lexsort((cols["pair_id"][want], cols["correct_margin"][want]))]
    got = np.concatenate([t.page({"quality_decile": 1}, errors=True, offset=o, limit=7, columns=["pair_id"])
                          .column(0).to_numpy() for o in range(0, len(want), 7)])
    assert (got == cols["pair_id"][order]).all()
    assert (cols["correct_margin"][order] < 0).all()  # every error sits on the wrong side


def test_the_decile_is_the_rank_of_the_lower_face_quality(cols):
    pq_ = np.minimum(cols["quality1"], cols["quality2"])
    assert np.allclose(pq_, cols["pair_quality"])
    lowest = cols["quality_decile"] == 1
    assert lowest.sum() == len(pq_) // 10 and pq_[lowest].max() <= pq_[~lowest].min()


def test_accuracy_by_a_column_and_recomputed_accuracy(run, cols):
    t = RunTables(run)
    rows = t.accuracy_by("quality_decile")
    assert [r["value"] for r in rows] == list(range(1, 11))
    for r in rows:
        m = cols["quality_decile"] == r["value"]
        assert r["pairs"] == m.sum() and r["errors"] == (~cols["correct"][m]).sum()
        assert r["false_accepts"] == (cols["outcome"][m] == "false accept").sum()
        assert r["accuracy"] == pytest.approx(cols["correct"][m].mean())
    assert t.accuracy() == Run(run).meta["accuracy"]


def test_one_pair_by_id_with_both_faces(run, cols):
    row = RunTables(run).pair(1234)
    assert row["score"] == cols["score"][1234] and row["path1"] == cols["path1"][1234]
    assert [f["face_id"] for f in row["faces"]] == [cols["face1"][1234], cols["face2"][1234]]
    assert row["faces"][0]["path"] == row["path1"]


def test_bad_columns_and_ids_are_one_line_and_values_are_parameters(run):
    t = RunTables(run)
    with pytest.raises(RunError, match="no column 'drop'"):
        t.count({"drop": 1})
    with pytest.raises(RunError, match="no column"):
        t.page(order_by="score; DROP TABLE pairs")
    with pytest.raises(RunError, match="no pair 999999"):
        t.pair(999999)
    assert t.count({"outcome": "x' OR '1'='1"}) == 0
    assert t.count({"outcome": ["false accept", "false reject"]}) == t.count(errors=True)
    assert t.count({"score": (0.5, 2.0)}) == t.count() - t.count({"score": (-2.0, 0.4999999999)})
    with pytest.raises(RunError, match="not a run folder"):
        RunTables(run.parent)
