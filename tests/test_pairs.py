"""LFW pair lists: the official files and small hand-written ones."""

from __future__ import annotations

from pathlib import Path

import pytest

from cqa_core.data.pairs import (
    Pair,
    PairsFormatError,
    pair_paths,
    read_pairs,
    resolve_image,
    unique_images,
)


@pytest.mark.data
def test_view2_pairs_txt(lfw_root: Path) -> None:
    pairs = read_pairs(lfw_root / "pairs.txt")
    assert len(pairs) == 6000
    assert sum(p.same for p in pairs) == 3000
    assert sorted({p.fold for p in pairs}) == list(range(10))
    ids_per_fold = []
    for k in range(10):
        fold = [p for p in pairs if p.fold == k]
        assert len(fold) == 600 and sum(p.same for p in fold) == 300
        assert all(p.same for p in fold[:300]) and not any(p.same for p in fold[300:])
        ids_per_fold.append({p.name1 for p in fold} | {p.name2 for p in fold})
    for a in range(10):
        for b in range(a + 1, 10):
            assert not ids_per_fold[a] & ids_per_fold[b], f"folds {a} and {b} share people"
    assert len(set().union(*ids_per_fold)) == 4281  # the README's count
    assert pairs[0] == Pair("Abel_Pacheco", 1, "Abel_Pacheco", 4, True, 0)
    paths = pair_paths(pairs[:5], lfw_root)
    assert paths[0][0] == lfw_root / "Abel_Pacheco" / "Abel_Pacheco_0001.jpg"
    assert all(a.exists() and b.exists() for a, b in paths)


@pytest.mark.data
def test_view1_dev_lists(lfw_root: Path) -> None:
    train = read_pairs(lfw_root / "pairsDevTrain.txt")
    test = read_pairs(lfw_root / "pairsDevTest.txt")
    assert (len(train), sum(p.same for p in train), {p.fold for p in train}) == (2200, 1100, {0})
    assert (len(test), sum(p.same for p in test)) == (1000, 500)


def test_headerless_file_and_fold_boundaries(tmp_path: Path) -> None:
    f = tmp_path / "p.txt"
    f.write_text("A\t1\t2\nA\t1\tB\t3\n\nC\t2\t3\nC 1 D 1\nE\t1\tF\t2\n")
    with pytest.warns(UserWarning, match="2 fold"):  # no header: stratified, 2 same pairs -> 2 folds
        pairs = read_pairs(f)
    assert [p.fold for p in pairs] == [0, 0, 1, 0, 1]
    assert [p.same for p in pairs] == [True, False, True, False, False]
    assert pairs[1] == Pair("A", 1, "B", 3, False, 0)
    assert unique_images(pairs) == [("A", 1), ("A", 2), ("B", 3), ("C", 1), ("C", 2), ("C", 3),
                                    ("D", 1), ("E", 1), ("F", 2)]


def test_header_mismatch_and_bad_lines(tmp_path: Path) -> None:
    f = tmp_path / "p.txt"
    f.write_text("2\t1\nA\t1\t2\nA\t1\tB\t3\n")  # header: 2 folds, got 1
    with pytest.raises(PairsFormatError, match="header"):
        read_pairs(f)
    f.write_text("1\t1\nA\t1\t2\nA\tx\tB\t3\n")
    with pytest.raises(PairsFormatError, match=":3:"):
        read_pairs(f)


def test_resolve_any_extension(tmp_path: Path) -> None:
    (tmp_path / "A").mkdir()
    (tmp_path / "A" / "A_0002.png").write_bytes(b"x")
    assert resolve_image(tmp_path, "A", 2) == tmp_path / "A" / "A_0002.png"
    with pytest.raises(FileNotFoundError, match="A_0003"):
        resolve_image(tmp_path, "A", 3)
