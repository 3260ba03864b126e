"""Deletion / insertion curves on scorers and a hand-built model whose right answer is known.

No trained CQA-Face checkpoint exists in the repository yet, so "Grad-CAM beats a random map" is
tested on :class:`cqa_core.explain.toy.WindowStem`: only pixels inside a window can change the
embedding and Grad-CAM is zero outside it by construction, so a faithful ranking is known.
"""

import numpy as np
import pytest
import torch

from cqa_core.config import ModelConfig
from cqa_core.explain import compare_maps, curves, similarity_gradcam
from cqa_core.explain.common import ExplainError
from cqa_core.explain.faithfulness import gaussian_blur, make_baseline, similarity_score
from cqa_core.explain.toy import WindowStem, calibrate
from cqa_core.model import create_model


def mean_score(x: torch.Tensor) -> torch.Tensor:
    return x.mean(dim=(1, 2, 3))  # (N,)


def test_linear_score_gives_triangle_areas():
    # image of ones, baseline 0, score = mean pixel: deletion falls 1 -> 0 linearly (AUC 1/2),
    # insertion rises 0 -> 1 (AUC 1/2), whatever the map
    x = torch.ones(1, 3, 112, 112)
    c = curves(mean_score, x, np.random.default_rng(0).random((112, 112)), baseline=0.0, steps=10)
    assert c.deletion[0] == pytest.approx(1.0) and c.deletion[-1] == pytest.approx(0.0)
    assert c.deletion_auc == pytest.approx(0.5, abs=1e-3) and c.insertion_auc == pytest.approx(0.5, abs=1e-3)


def test_right_map_beats_random_map_on_a_region_score():
    region = torch.zeros(112, 112)
    region[40:70, 30:60] = 1
    score = lambda x: (x * region).sum(dim=(1, 2, 3)) / (3 * region.sum())  # noqa: E731  (N,) in [0, 1]
    x = torch.ones(1, 3, 112, 112)
    good = curves(score, x, region.numpy(), baseline=0.0, steps=20)
    rand = curves(score, x, np.random.default_rng(1).random((112, 112)), baseline=0.0, steps=20)
    assert good.deletion_auc < 0.1 < rand.deletion_auc
    assert good.insertion_auc > 0.9 > rand.insertion_auc


def top_rows_score(x: torch.Tensor) -> torch.Tensor:
    """Mean of the top 28 rows (a quarter of the image): what raster-order tie-breaking deletes first."""
    return x[:, :, :28].mean(dim=(1, 2, 3))  # (N,)


def test_flat_map_scores_like_a_random_map():
    # Image of ones, baseline 0, score = mean of the top quarter. Any uniformly random order
    # deletes the top quarter in proportion: the deletion curve falls 1 -> 0 linearly, AUC 1/2.
    # Raster-order ties (the old stable sort) would delete the top rows first: AUC ~ 1/8.
    x = torch.ones(1, 3, 112, 112)
    flat = curves(top_rows_score, x, np.zeros((112, 112)), baseline=0.0, steps=20, draws=5)
    rand = curves(top_rows_score, x, np.random.default_rng(2).permutation(112 * 112).reshape(112, 112),
                  baseline=0.0, steps=20)
    assert flat.draws == 5 and rand.draws == 1  # only a map with ties needs several draws
    assert flat.deletion_auc == pytest.approx(0.5, abs=0.02) and rand.deletion_auc == pytest.approx(0.5, abs=0.02)
    assert flat.insertion_auc == pytest.approx(0.5, abs=0.02)
    assert abs(flat.deletion_auc - rand.deletion_auc) < 0.02


def test_ties_inside_a_region_are_broken_at_random():
    # A map that is 1 on the bottom half and 0 (tied) on the top half: the bottom half goes first
    # (score unchanged until half the pixels are gone), then the tied top half in random order,
    # so the top-quarter score falls linearly over the second half: AUC = 1/2 + 1/4 = 3/4.
    x = torch.ones(1, 3, 112, 112)
    m = np.zeros((112, 112))
    m[56:] = 1.0
    c = curves(top_rows_score, x, m, baseline=0.0, steps=20, draws=5)
    assert c.deletion[10] == pytest.approx(1.0)
    assert c.deletion_auc == pytest.approx(0.75, abs=0.02)
    again = curves(top_rows_score, x, m, baseline=0.0, steps=20, draws=5)
    np.testing.assert_array_equal(c.deletion, again.deletion)  # seeded: the same draws


def test_similarity_score_runs_in_eval_mode_and_restores_the_mode():
    torch.manual_seed(0)
    model = calibrate(create_model(ModelConfig(stem="light", branches=2)))
    g = torch.Generator().manual_seed(3)
    a, b = torch.rand(2, 1, 3, 112, 112, generator=g) * 2 - 1
    with torch.no_grad():
        expected = torch.nn.functional.cosine_similarity(model(a).embedding, model(b).embedding)  # eval-mode answer
    model.train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    score = similarity_score(model, b)
    torch.testing.assert_close(score(a), expected)  # train-mode BN would give a different value
    assert model.training
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), f"{k} changed"


def test_baselines():
    x = torch.rand(1, 3, 112, 112)
    assert torch.allclose(make_baseline(x, "mean").mean(dim=(2, 3)), x.mean(dim=(2, 3)))
    assert gaussian_blur(torch.ones(1, 3, 112, 112)).sub(1).abs().max() < 1e-5  # blur keeps a constant
    with pytest.raises(ExplainError):
        make_baseline(x, "nope")
    with pytest.raises(ExplainError, match="must match"):
        curves(mean_score, x, np.zeros((7, 7)))


def test_gradcam_deletes_faster_than_random_on_a_window_model():
    # Only pixels 32..79 x 32..79 reach the embedding. Face a is a low-contrast copy of face b
    # (same "person"), so restoring contrast inside the window raises the similarity and Grad-CAM
    # has positive evidence there (asserted: on random weights the ReLU can also kill every cell,
    # in which case Grad-CAM says nothing and no ranking can be tested).
    torch.manual_seed(0)
    window = torch.zeros(7, 7)
    window[2:5, 2:5] = 1
    model = create_model(ModelConfig(stem="light", branches=4))
    model.stem = WindowStem(model.stem.out_channels, window)
    model = calibrate(model)
    b = torch.rand(1, 3, 112, 112, generator=torch.Generator().manual_seed(7)) * 2 - 1
    a = 0.5 * b
    res = similarity_gradcam(model, a, b)
    assert (res.raw_a[0] > 0).any() and (res.raw_a[0][window.numpy() == 0] == 0).all()
    cam = res.map_a[0]  # (112, 112)
    outside = np.ones((112, 112), bool)
    outside[16:96, 16:96] = False  # beyond the window plus one bilinear cell of bleed
    assert cam[outside].max() == 0.0
    rng = np.random.default_rng(0)
    maps = {"gradcam": cam, **{f"random{k}": rng.random((112, 112)) for k in range(3)}}
    res = compare_maps(model, a, b, maps, baseline="mean", steps=16)
    for k in range(3):
        assert res["gradcam"].deletion_auc < res[f"random{k}"].deletion_auc
