"""Pair lists without a header: stratified folds (issue 15), checked on interleaved lists."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from cqa_core.data.pairs import has_header, read_pairs, stratified_folds
from cqa_core.metrics import evaluate_scores


def _interleaved(path: Path, n: int) -> Path:
    """``n`` pairs alternating same / different: pair 2k is ``Pk k+1 k+2``, pair 2k+1 ``Pk 1 Qk 1``."""
    lines = []
    for i in range(n):
        k = i // 2
        lines.append(f"P{k}\t1\t2" if i % 2 == 0 else f"P{k}\t1\tQ{k}\t1")
    path.write_text("\n".join(lines) + "\n")
    return path


def test_stratified_folds_by_hand() -> None:
    assert stratified_folds([True, False] * 4, 2) == [0, 0, 0, 0, 1, 1, 1, 1]
    # 3 same then 3 different, 3 folds: each fold one of each kind
    assert stratified_folds([True] * 3 + [False] * 3, 3) == [0, 1, 2, 0, 1, 2]
    with pytest.warns(UserWarning, match="using 2 fold"):
        assert stratified_folds([True, True, False, False, False], 10) == [0, 1, 0, 0, 1]
    with pytest.warns(UserWarning, match="using 1 fold"):
        assert stratified_folds([True, True], 10) == [0, 0]  # one kind only: a single fold


def test_interleaved_848_pairs_make_10_balanced_folds(tmp_path: Path) -> None:
    f = _interleaved(tmp_path / "pairs.txt", 848)  # the list: 216 folds before
    assert not has_header(f)
    pairs = read_pairs(f)
    folds = np.array([p.fold for p in pairs])
    same = np.array([p.same for p in pairs])
    assert sorted(set(folds.tolist())) == list(range(10))
    per_fold_same = [int(same[folds == k].sum()) for k in range(10)]
    per_fold_diff = [int((~same[folds == k]).sum()) for k in range(10)]
    # same-pair k goes to fold k * 10 // 424: fold f starts at ceil(42.4 f)
    assert per_fold_same == [43, 42, 43, 42, 42, 43, 42, 43, 42, 42]
    assert per_fold_diff == per_fold_same
    assert np.all(np.diff(folds[same]) >= 0)  # contiguous runs in file order
    assert len(read_pairs(f, n_folds=4)) == 848 and {p.fold for p in read_pairs(f, n_folds=4)} == {0, 1, 2, 3}


def test_interleaved_list_known_accuracy(tmp_path: Path) -> None:
    """40 interleaved pairs, 10 folds of 2 same + 2 different. Same pairs score 0.8, different 0.2,
    except the first same pair (0.1). Every training split puts the threshold at 0.5, so fold 0
    scores 3/4 and the other nine 4/4: mean 0.975, population std sqrt((0.225^2 + 9 * 0.025^2) / 10)
    = 0.075. (The old reader made 20 folds of 2 pairs here.)"""
    pairs = read_pairs(_interleaved(tmp_path / "pairs.txt", 40))
    folds = np.array([p.fold for p in pairs])
    same = np.array([p.same for p in pairs])
    assert folds.tolist() == [k for k in range(10) for _ in range(4)]
    scores = np.where(same, 0.8, 0.2)
    scores[0] = 0.1
    r = evaluate_scores(scores, same, folds)
    assert r.fold_accuracies == pytest.approx([0.75] + [1.0] * 9)
    assert r.accuracy == pytest.approx(0.975) and r.accuracy_std == pytest.approx(0.075)
    assert r.fold_thresholds == pytest.approx([0.5] * 10)


def test_header_keeps_lfw_blocks(tmp_path: Path) -> None:
    f = tmp_path / "p.txt"
    f.write_text("2\t1\nA\t1\t2\nA\t1\tB\t3\nC\t2\t3\nC 1 D 1\n")
    assert has_header(f)
    assert [p.fold for p in read_pairs(f)] == [0, 0, 1, 1]
    assert [p.fold for p in read_pairs(f, n_folds=5)] == [0, 0, 1, 1]


@pytest.mark.slow
def test_cli_eval_folds_on_headerless_list(tmp_path: Path) -> None:
    """``cqa eval --data pairs:ROOT:FILE --folds 4`` on 16 aligned synthetic faces."""
    from PIL import Image

    from cqa_core.cli import main

    rng = np.random.default_rng(0)
    for k in range(8):
        for name, idx in ((f"P{k}", 1), (f"P{k}", 2), (f"Q{k}", 1)):
            (tmp_path / name).mkdir(exist_ok=True)
            img = rng.integers(0, 255, (112, 112, 3), dtype=np.uint8)
            Image.fromarray(img).save(tmp_path / name / f"{name}_{idx:04d}.png")
    f = _interleaved(tmp_path / "pairs.txt", 16)
    out = tmp_path / "r.json"
    with pytest.warns(UserWarning, match="using 8 fold"):  # the reader's default 10 > 8 same pairs
        rc = main(["eval", "--data", f"pairs:{tmp_path}:{f}", "--folds", "4", "--device", "cpu", "--json", str(out)])
    assert rc == 0
    r = json.loads(out.read_text())
    assert len(r["fold_accuracies"]) == 4 and r["n_pairs"] == 16 and r["n_same"] == 8


def test_eval_refold_rules(tmp_path: Path) -> None:
    from types import SimpleNamespace

    from cqa_core.evaluation.protocols import refold

    lfw_folds = np.repeat(np.arange(10), 4)
    ps = SimpleNamespace(issame=np.tile([True, True, False, False], 10), folds=lfw_folds.copy())
    assert refold(ps, "lfw", None).folds.tolist() == lfw_folds.tolist()  # LFW keeps its folds
    with pytest.raises(ValueError, match="keeps its own 10 folds"):
        refold(ps, "lfw", 5)
    assert refold(ps, "bin:x.bin", 4).folds.tolist() == [k for k in range(4) for _ in range(10)]
    f = _interleaved(tmp_path / "p.txt", 40)
    ps = SimpleNamespace(issame=np.tile([True, False], 20), folds=np.zeros(40, int))
    assert refold(ps, f"pairs:{tmp_path}:{f}", 2).folds.tolist() == [0] * 20 + [1] * 20
