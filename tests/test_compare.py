"""``cqa compare``: the 2 x 2 table, McNemar's exact test and the disagreements of two runs.

Two runs share a pair list; their right / wrong patterns are set by hand, so every count and the
p-value can be worked out on paper (McNemar exact: 2 * P(Binomial(n, 1/2) <= min(b, c))).
"""

from __future__ import annotations

import json
from math import comb

import numpy as np
import pytest

from cqa_core.cli import main
from cqa_core.evaluation.runs.store import scored_columns, write_run
from cqa_core.evaluation.runs.synthetic import synthetic_run

pytest.importorskip("duckdb", reason="the runs extra (duckdb) is not installed")
pytest.importorskip("scipy", reason="the runs extra (scipy) is not installed")
from cqa_core.evaluation.runs.compare import compare_runs  # noqa: E402


def hand_run(folder, correct: list[bool], margins: list[float], name: str, digest: str = "same-list"):
    """A run of len(correct) pairs (2 folds, threshold 0.5): pair k right iff correct[k], |margin| margins[k]."""
    n = len(correct)
    same = np.arange(n) % 2 == 0  # (N,)
    right = np.array(correct)
    m = np.abs(np.array(margins))
    score = 0.5 + np.where(same == right, m, -m)  # above the threshold iff called "same"
    fold = (np.arange(n) >= n // 2).astype(int)
    cols = scored_columns(score, same, fold, {0: 0.5, 1: 0.5}, np.ones(n), np.ones(n))
    accs = [float(right[fold == k].mean()) for k in (0, 1)]
    pairs = {"pair_id": np.arange(n), "path1": [f"a/{k}.jpg" for k in range(n)], "path2": [f"b/{k}.jpg" for k in range(n)],
             **cols}
    meta = {"data": "hand", "protocol": "verify", "accuracy": float(np.mean(accs)), "n_pairs": n,
            "best_threshold": 0.5, "pairs_digest": digest, "model": {"name": name, "digest": name}}
    return write_run(folder, meta, pairs, {"face_id": np.arange(2)}, np.zeros((2, 4)))


@pytest.fixture
def runs(tmp_path):
    # pairs 0-4: only A right; pair 5: only B right; 6-9: both right; 10-11: both wrong
    a = [True] * 5 + [False] + [True] * 4 + [False] * 2
    b = [False] * 5 + [True] + [True] * 4 + [False] * 2
    margins = [0.1 * (k + 1) for k in range(12)]
    return hand_run(tmp_path / "A", a, margins, "model A"), hand_run(tmp_path / "B", b, margins, "model B")


def test_table_mcnemar_and_disagreements_by_hand(runs):
    c = compare_runs(*runs)
    assert c.table == {"both right": 4, "only A right": 5, "only B right": 1, "both wrong": 2}
    p = 2 * sum(comb(6, k) for k in range(0, 2)) / 2**6  # b = 5, c = 1: 2 * P(X <= 1), X ~ Bin(6, 1/2)
    assert c.p_value == pytest.approx(p) and p == pytest.approx(0.21875)
    assert [r["pair_id"] for r in c.only_a_right] == [4, 3, 2, 1, 0]  # B's worst (most negative) margin first
    assert all(r["margin_b"] < 0 < r["margin_a"] for r in c.only_a_right)
    assert [r["pair_id"] for r in c.only_b_right] == [5]
    assert c.accuracy_a == pytest.approx(9 / 12) and c.accuracy_b == pytest.approx(5 / 12)
    # fold 0 = pairs 0-5: A 5/6, B 1/6; fold 1 = pairs 6-11: both 4/6
    assert [(f["fold"], round(f["difference"], 6)) for f in c.folds] == [(0, round(4 / 6, 6)), (1, 0.0)]


def test_no_disagreement_is_p_1(tmp_path):
    a = hand_run(tmp_path / "A", [True, False, True, True], [0.1] * 4, "A")
    b = hand_run(tmp_path / "B", [True, False, True, True], [0.2] * 4, "B")
    assert compare_runs(a, b).p_value == 1.0


def test_cli_prints_and_writes_the_comparison(runs, tmp_path, capsys):
    out = tmp_path / "cmp.json"
    assert main(["compare", str(runs[0]), str(runs[1]), "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "model A on hand verify: 75.00%" in text and "model B on hand verify: 41.67%" in text
    assert "McNemar exact test on the 6 disagreements: p = 0.2188" in text
    assert "only A right (B's worst margin first): 5" in text
    saved = json.loads(out.read_text())
    assert saved["table"]["only A right"] == 5 and len(saved["only_a_right"]) == 5


def test_runs_on_different_pairs_are_refused_in_one_line(tmp_path, capsys):
    a = synthetic_run(tmp_path / "A", pairs=400, faces=100, seed=1)
    b = synthetic_run(tmp_path / "B", pairs=400, faces=100, seed=2)
    assert main(["compare", str(a), str(b)]) == 2
    err = capsys.readouterr().err
    assert "different pair lists" in err and err.count("\n") == 1
    shifted = synthetic_run(tmp_path / "A2", pairs=400, faces=100, seed=1, shift=-0.1)
    c = compare_runs(a, shifted)  # same pair list, other scores: accepted
    assert sum(c.table.values()) == 400
    assert main(["compare", str(a), str(tmp_path)]) == 2
    assert "not a run folder" in capsys.readouterr().err
