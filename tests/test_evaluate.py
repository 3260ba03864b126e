"""Verification / identification metrics on planted scores whose answers are worked out by hand."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cqa_core.evaluation.protocols import embed
from cqa_core.metrics import (
    best_threshold,
    evaluate_pairs,
    evaluate_scores,
    identification_rank1,
    roc,
    split_gallery,
    tar_at_far,
)


def _pairs_with_scores(scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """2-D unit embeddings whose cosine similarity is exactly ``scores``."""
    theta = np.arccos(np.clip(scores, -1, 1))
    e1 = np.tile([[3.0, 0.0]], (len(scores), 1))  # not unit length: evaluate must normalise
    e2 = np.stack([np.cos(theta), np.sin(theta)], 1) * 0.5
    return e1, e2


def test_separable_pairs_are_perfect() -> None:
    s = np.array([0.9, 0.1] * 10)
    same = np.array([True, False] * 10)
    r = evaluate_pairs(*_pairs_with_scores(s), same)
    assert r.accuracy == 1.0 and r.accuracy_std == 0.0
    assert r.best_threshold == pytest.approx(0.5)
    assert all(v == 1.0 for v in r.tar_at_far.values())
    assert r.auc == pytest.approx(1.0)


def test_one_planted_error_gives_hand_computed_folds() -> None:
    # 10 folds of (positive, negative); positives 0.8, negatives 0.3, except fold 3's positive = 0.2.
    s = np.array([0.8, 0.3] * 10)
    s[6] = 0.2
    same = np.array([True, False] * 10)
    r = evaluate_pairs(*_pairs_with_scores(s), same)
    # Every fold trains a threshold of (0.3 + 0.8) / 2 = 0.55; fold 3 then gets its positive wrong.
    assert r.fold_thresholds == pytest.approx([0.55] * 10)
    assert r.fold_accuracies == pytest.approx([1.0] * 3 + [0.5] + [1.0] * 6)
    assert r.accuracy == pytest.approx(0.95)
    assert r.accuracy_std == pytest.approx(0.15)  # sqrt((9 * 0.05^2 + 0.45^2) / 10)
    # All 10 negatives tie at 0.3, so any FAR < 1 forbids accepting them: TAR = 9/10.
    assert r.tar_at_far == {1e-1: pytest.approx(0.9), 1e-2: pytest.approx(0.9), 1e-3: pytest.approx(0.9)}
    assert r.n_pairs == 20 and r.n_same == 10


def test_explicit_folds_are_used() -> None:
    s = np.array([0.8, 0.3, 0.8, 0.3, 0.2, 0.3])
    same = np.array([True, False, True, False, True, False])
    r = evaluate_scores(s, same, folds=np.array([0, 0, 1, 1, 2, 2]))
    assert len(r.fold_accuracies) == 3
    assert r.fold_accuracies == pytest.approx([1.0, 1.0, 0.5])


def test_best_threshold_matches_brute_force() -> None:
    rng = np.random.default_rng(0)
    for _ in range(20):
        s = np.round(rng.normal(size=200), 1)  # many ties
        y = rng.random(200) < 0.5 + 0.4 * np.tanh(s)
        thr, acc = best_threshold(s, y)
        cands = np.r_[np.unique(s), np.inf]
        brute = max(((s >= t) == y).mean() for t in cands)
        assert acc == pytest.approx(brute)
        assert ((s >= thr) == y).mean() == pytest.approx(brute)


def test_tar_at_far_matches_brute_force_count() -> None:
    rng = np.random.default_rng(1)
    s = np.r_[rng.normal(1.5, 1, 3000), rng.normal(0, 1, 3000)].round(2)
    y = np.r_[np.ones(3000, bool), np.zeros(3000, bool)]
    fpr, tpr, thr = roc(s, y)
    assert fpr[0] == 0 and tpr[0] == 0 and fpr[-1] == 1 and tpr[-1] == 1
    for far in (1e-1, 1e-2, 1e-3):
        best = 0.0
        for t in np.unique(s):
            acc = s >= t
            if (acc & ~y).sum() / (~y).sum() <= far:
                best = max(best, (acc & y).sum() / y.sum())
        assert tar_at_far(fpr, tpr, far) == pytest.approx(best)


def test_bad_shapes_are_refused() -> None:
    with pytest.raises(ValueError):
        evaluate_pairs(np.zeros((3, 4)), np.zeros((2, 4)), np.ones(3, bool))
    with pytest.raises(ValueError):
        evaluate_scores(np.zeros(3), np.ones(4, bool))


def test_identification_rank1_by_hand() -> None:
    gallery = np.array([[1.0, 0.0], [2.0, 0.2], [0.0, 1.0]])
    labels = np.array([7, 7, 9])
    probes = np.array([[0.9, 0.1], [0.2, 0.8], [0.1, 0.9]])
    # probe 0 -> id 7 (right), probe 1 -> id 9 (wrong, it is 7), probe 2 -> id 9 (right)
    assert identification_rank1(gallery, labels, probes, np.array([7, 7, 9])) == pytest.approx(2 / 3)


def test_split_gallery() -> None:
    g, p = split_gallery(np.array([0, 0, 0, 1, 2, 2]), per_id=1)
    assert g.tolist() == [0, 4] and p.tolist() == [1, 2, 5]


class _RowModel(torch.nn.Module):
    """Embedding = the first pixel row of the red channel (normalised input)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, 0, 0, :]  # (B, W)


def test_embed_batches_and_flip_sum() -> None:
    imgs = np.zeros((5, 4, 4, 3), np.uint8)
    imgs[:, 0, :, 0] = [0, 255, 255, 0]  # red row: -1, 1, 1, -1 after normalisation
    imgs[2, 0, :, 0] = [255, 0, 0, 0]  # 1, -1, -1, -1
    e = embed(_RowModel(), imgs, batch_size=2, progress=False)
    assert e.shape == (5, 4)
    assert e[0].tolist() == [-1, 1, 1, -1] and e[2].tolist() == [1, -1, -1, -1]
    ef = embed(_RowModel(), imgs, batch_size=3, flip=True, progress=False)
    assert ef[2].tolist() == [0, -2, -2, 0]  # row + mirrored row
    ds = [(torch.from_numpy(im).permute(2, 0, 1), 0) for im in imgs]  # dataset of (img, label)
    assert np.array_equal(embed(_RowModel(), ds, batch_size=4, progress=False), e)


def test_make_pairs_folds_are_identity_disjoint() -> None:
    from cqa_core.data.verification import make_pairs

    labels = np.repeat(np.arange(40), 3)  # 40 identities x 3 images
    i1, i2, same, fold = make_pairs(labels, folds=4, per_fold=10, seed=0)
    assert len(i1) == 80 and same.sum() == 40
    assert np.array_equal(labels[i1] == labels[i2], same)  # same-pairs really are the same identity
    assert (i1[same] != i2[same]).all()
    ids = [set(labels[i1[fold == k]]) | set(labels[i2[fold == k]]) for k in range(4)]
    assert all(not ids[a] & ids[b] for a in range(4) for b in range(a + 1, 4))
    assert np.array_equal(make_pairs(labels, 4, 10, 0)[0], i1)  # deterministic


def test_single_class_auc_is_none() -> None:
    r = evaluate_scores(np.array([0.5, 0.6]), np.array([True, True]))
    assert r.to_dict()["auc"] is None


def write_bin(path, images: list[bytes], pairs: list[tuple[int, int]], issame: list[bool]):
    """An insightface .bin: pair k = images 2k, 2k+1."""
    import pickle

    bins = [images[i] for pair in pairs for i in pair]
    path.write_bytes(pickle.dumps((bins, issame), protocol=4))
    return path


def known_answer_bin(shared_data, tmp_path, plant: bool):
    """20 pairs in 10 folds of (same, different): "same" = one photo twice (cos 1 for any model, flip
    or not), "different" = photos of two different LFW people. With ``plant``, fold 3's "same"
    pair is two different people too: a trained model must reject it."""
    from cqa_core.data.binset import load_bin_raw

    raw, issame = load_bin_raw(shared_data / "fixtures" / "small_lfw.bin")  # 10 same-person pairs
    assert issame.all() and len(raw) == 20  # photo 2k and 2k+1 are person k; persons k differ
    pairs, same = [], []
    for k in range(10):
        pairs.append((2 * k, 2 * ((k + 3) % 10) + 1) if (plant and k == 3) else (2 * k, 2 * k))
        pairs.append((2 * k + 1, 2 * ((k + 1) % 10)))
        same += [True, False]
    return write_bin(tmp_path / ("planted.bin" if plant else "known.bin"), raw, pairs, same)


@pytest.mark.data
@pytest.mark.filterwarnings("ignore::DeprecationWarning")
@pytest.mark.parametrize("plant", [False, True], ids=["perfect", "one_planted_error"])
def test_cli_eval_bin_with_negative_pairs_has_the_known_accuracy(shared_data, tmp_path, monkeypatch, plant) -> None:
    import json

    from cqa_core.cli import main

    monkeypatch.delenv("CQA_CHECKPOINT", raising=False)  # the bundled default (trained) model
    fixture = known_answer_bin(shared_data, tmp_path, plant)
    out = tmp_path / "r.json"
    rc = main(["eval", "--data", f"bin:{fixture}", "--protocol", "verify", "--json", str(out), "--flip",
               "--device", "cpu"])
    assert rc == 0
    r = json.loads(out.read_text())
    assert r["n_pairs"] == 20 and r["n_same"] == 10
    # bin: folds are 10 consecutive blocks = the 10 (same, different) couples above
    assert r["fold_accuracies"] == pytest.approx([1.0] * 3 + [0.5 if plant else 1.0] + [1.0] * 6)
    assert r["accuracy"] == pytest.approx(0.95 if plant else 1.0)


@pytest.mark.data
@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_cli_eval_other_protocols_read_the_negative_pairs(shared_data, tmp_path, monkeypatch) -> None:
    import json

    from cqa_core.cli import main

    monkeypatch.delenv("CQA_CHECKPOINT", raising=False)
    fixture = known_answer_bin(shared_data, tmp_path, plant=False)
    out = tmp_path / "r.json"
    for protocol in ("masked-m2m", "cross-quality"):
        rc = main(["eval", "--data", f"bin:{fixture}", "--protocol", protocol, "--json", str(out), "--device", "cpu"])
        assert rc == 0
        r = json.loads(out.read_text())
        assert r["protocol"] == protocol and r["n_pairs"] == 20 and r["n_same"] == 10
        assert len(r["fold_accuracies"]) == 10 and set(r["tar_at_far"]) == {"0.1", "0.01", "0.001"}


def test_cli_protocol_names_are_the_evaluation_protocols() -> None:
    """``cqa eval`` lists the protocols without importing torch; the lists must not drift apart."""
    from cqa_core.commands import eval as command
    from cqa_core.evaluation import protocols

    assert command.PROTOCOLS == protocols.PROTOCOLS and command.PAIR_PROTOCOLS == protocols.PAIR_PROTOCOLS
