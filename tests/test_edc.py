"""Error-versus-discard characteristics on pairs whose answers are worked out by hand."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from cqa_core.evaluation.edc import (
    discard_order,
    edc,
    edc_area,
    fmr_threshold,
    fnmr_curve,
    on_grid,
    pair_quality,
)
from cqa_core.metrics import evaluate_scores


def test_threshold_lets_through_at_most_floor_fmr_n_impostors() -> None:
    imp = np.array([0.0, 0.5, -0.1, 0.3])
    assert fmr_threshold(imp, 0.25) == 0.3  # k = 1: only 0.5 is above 0.3
    assert fmr_threshold(imp, 0.1) == 0.5  # k = 0: nothing may match
    assert fmr_threshold(imp, 1.0) == float("-inf")
    assert fmr_threshold(np.array([0.5, 0.5, 0.2]), 1 / 3) == 0.5  # a tie at the cut: 0 accepted, not 2
    with pytest.raises(ValueError, match="different-person"):
        fmr_threshold(np.array([]), 0.1)


def test_curve_and_area_by_hand() -> None:
    genuine = np.array([0.9, 0.2, 0.8, 0.1, 0.7])
    quality = np.array([5.0, 1.0, 4.0, 2.0, 3.0])
    # t = 0.3: misses are 0.2 (q=1) and 0.1 (q=2), the two lowest qualities
    curve = fnmr_curve(genuine, quality, 0.3)
    np.testing.assert_allclose(curve, [2 / 5, 1 / 4, 0, 0, 0])
    # area to 40 % discard (d = 0, 1, 2 over n = 5): ((0.4 + 0.25) / 2 + (0.25 + 0) / 2) / 5
    assert edc_area(curve, 0.4) == pytest.approx(0.09)
    assert on_grid(curve, np.array([0.0, 0.2, 0.5, 0.99])) == [0.4, 0.25, 0.0, 0.0]
    # the worst reading discards the hits first: 2/5, 2/4, 2/3, 2/2, ...
    np.testing.assert_allclose(fnmr_curve(genuine, -quality, 0.3)[:4], [0.4, 0.5, 2 / 3, 1.0])


def test_pair_quality_is_the_lower_face() -> None:
    np.testing.assert_array_equal(pair_quality([0.2, 0.9], [0.5, 0.4]), [0.2, 0.4])


def test_ties_are_discarded_in_random_order_not_file_order() -> None:
    genuine = np.r_[np.zeros(500), np.ones(500)]  # misses first in file order
    flat = np.zeros(1000)
    order = discard_order(flat, seed=3)
    assert sorted(order.tolist()) == list(range(1000)) and not (order[:100] < 500).all()
    flat_area = edc_area(fnmr_curve(genuine, flat, 0.5, seed=3))
    file_order_area = edc_area(fnmr_curve(genuine, np.arange(1000.0), 0.5))  # index 0 first
    assert flat_area == pytest.approx(0.2 * 0.5, abs=0.01)  # flat: FNMR stays near 1/2
    assert file_order_area < 0.09  # discarding in file order would look informative


def test_edc_adds_random_and_checks_inputs() -> None:
    rng = np.random.default_rng(0)
    y = np.r_[np.ones(400, bool), np.zeros(400, bool)]
    s = np.where(y, rng.normal(0.5, 0.2, 800), rng.normal(0.0, 0.2, 800)).round(2)  # ties on purpose
    oracle = np.where(y, s, 0.0)  # knows the score: discards the misses first
    res = edc(s, y, {"oracle": oracle}, fmrs=(1e-2, 1e-1), random_draws=20)
    json.dumps(res)  # JSON-ready
    for fmr in (1e-2, 1e-1):
        row = res["fmr"][f"{fmr:g}"]
        tar = evaluate_scores(s, y).tar_at_far.get(fmr)
        if tar is not None:  # FNMR before any discard is 1 - TAR@FAR of the ROC
            assert row["fnmr_at_0"] == pytest.approx(1 - tar)
        f0 = row["fnmr_at_0"]
        assert row["curves"]["random"]["area"] == pytest.approx(0.2 * f0, abs=4 * row["curves"]["random"]["area_std"] + 1e-3)
        misses = int(round(f0 * 400))
        assert row["curves"]["oracle"]["fnmr"][0] == pytest.approx(f0)
        if misses <= 0.2 * 400:  # all misses discarded within the range -> FNMR 0 after them
            i = int(np.ceil(100 * misses / 400))
            assert row["curves"]["oracle"]["fnmr"][i] == 0.0
        assert row["curves"]["oracle"]["area"] < row["curves"]["random"]["area"]
    with pytest.raises(ValueError, match="shape"):
        edc(s, y, {"bad": s[:10]})
    with pytest.raises(ValueError, match="max_discard"):
        edc(s, y, {}, max_discard=1.0)


class StubFaces(torch.nn.Module):
    """Embedding (3, 4, 0, ...) * (1 + pixel mean); branch 0 sees the whole 2 x 2 map, branch 1 one cell."""

    def __init__(self) -> None:
        super().__init__()
        self.p = torch.nn.Parameter(torch.zeros(()))

    def forward(self, x: torch.Tensor) -> SimpleNamespace:
        b = len(x)
        emb = torch.zeros(b, 8)  # (B, 8)
        emb[:, 0], emb[:, 1] = 3.0, 4.0
        maps = torch.zeros(b, 2, 2, 2)  # (B, 2, 2, 2)
        maps[:, 0] = 1.0
        maps[:, 1, 0, 0] = 1.0
        q = torch.tensor([[0.9, 0.1]]).repeat(b, 1)  # (B, 2)
        return SimpleNamespace(embedding=emb * (1 + x.mean((1, 2, 3)))[:, None], quality=q, attention_maps=maps)


def test_face_scores_by_hand() -> None:
    from cqa_core.evaluation.face_scores import score_faces

    faces = np.zeros((3, 112, 112, 3), np.uint8)
    faces[1] = 255  # pixel mean +1 after normalisation: embedding doubled
    fs = score_faces(StubFaces(), faces, batch_size=2, progress=False)
    np.testing.assert_allclose(fs.norm, [0.0, 10.0, 0.0], atol=1e-6)  # (1 + (-1)) * 5, (1 + 1) * 5
    # upsampled to 112: branch 0 mass 112^2, branch 1 a quarter of it (bilinear keeps the mean here)
    np.testing.assert_allclose(fs.overall, (0.9 * 4 + 0.1 * 1) / 5, rtol=1e-3)
    # CAL terms: the maps differ by 1 on 3 of 4 cells (exp(-100) - 0.2 < 0 -> 0), agree on 1 (1 - 0.2)
    np.testing.assert_allclose(fs.cal, 0.8 / 4, rtol=1e-6)
    flip = score_faces(StubFaces(), faces, batch_size=2, flip=True, progress=False)
    np.testing.assert_allclose(flip.embedding, 2 * fs.embedding)  # flip-sum; the stub is mirror-blind
    np.testing.assert_allclose(flip.norm, fs.norm)  # the norm is the face's own
