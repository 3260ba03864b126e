"""CAL diversity numbers on small maps worked out by hand (Eq. 2 via cqa_core.losses.cal_loss)."""

import math

import numpy as np
import pytest
import torch

from cqa_core.config import ModelConfig
from cqa_core.explain import dataset_diversity, diversity, diversity_of_maps
from cqa_core.explain.diversity import map_correlation
from cqa_core.losses import cal_loss
from cqa_core.model import create_model


def test_identical_maps_score_one_minus_t_and_gaussian_one():
    m = torch.tensor([[[0.3, 0.7], [0.1, 0.9]]]).expand(3, 2, 2)[None]  # (1, 3, 2, 2) three equal maps
    d = diversity_of_maps(m)
    np.testing.assert_allclose(d.penalty[0], np.full((3, 3), 0.8), atol=1e-6)  # exp(0) - 0.2
    np.testing.assert_allclose(d.gaussian[0], np.ones((3, 3)), atol=1e-6)
    assert d.cal[0] == pytest.approx(0.8, abs=1e-6)
    np.testing.assert_allclose(d.iou[0], np.ones((3, 3)))


def test_pixel_reduction_by_hand():
    # one location differs by 0.1: (3 * 0.8 + exp(-1) - 0.2) / 4 hinged, (3 + exp(-1)) / 4 raw
    m = torch.tensor([[[[0.0, 0.0], [0.0, 0.0]], [[0.0, 0.0], [0.0, 0.1]]]])  # (1, 2, 2, 2)
    d = diversity_of_maps(m)
    assert d.penalty[0, 0, 1] == pytest.approx((3 * 0.8 + math.exp(-1) - 0.2) / 4, abs=1e-6)
    assert d.gaussian[0, 0, 1] == pytest.approx((3 + math.exp(-1)) / 4, abs=1e-6)


def test_mean_off_diagonal_is_cal_loss():
    torch.manual_seed(0)
    maps = torch.rand(5, 4, 7, 7)
    d = diversity_of_maps(maps)
    for k in range(5):
        assert d.cal[k] == pytest.approx(cal_loss(maps[k : k + 1]).item(), abs=1e-6)


def test_disjoint_top_regions_have_zero_iou_entropy_and_coverage():
    m = torch.full((1, 2, 4, 4), 0.01)
    m[0, 0, 0, :] = 0.99  # branch 0: top row
    m[0, 1, 3, :] = 0.99  # branch 1: bottom row
    d = diversity_of_maps(m, top=0.25)  # top 4 of 16 locations
    assert d.iou[0, 0, 1] == 0.0 and d.iou[0, 0, 0] == 1.0
    np.testing.assert_allclose(d.coverage[0], [0.25, 0.25])
    uniform = diversity_of_maps(torch.full((1, 1, 4, 4), 0.5))
    assert uniform.entropy[0, 0] == pytest.approx(1.0, abs=1e-6)
    assert d.entropy[0, 0] < 0.6


def test_model_and_dataset_aggregation():
    torch.manual_seed(0)
    model = create_model(ModelConfig(stem="light", branches=4)).eval()
    faces = [np.random.default_rng(i).integers(0, 256, (112, 112, 3), dtype=np.uint8) for i in range(5)]
    one = diversity(model, faces[:2])
    agg = dataset_diversity(model, iter(faces), batch_size=2, progress=False)
    assert agg.penalty.shape == (5, 4, 4) and agg.entropy.shape == (5, 4)
    np.testing.assert_allclose(agg.cal[:2], one.cal, atol=1e-6)
    s = agg.summary()
    assert s["faces"] == 5 and 0.0 <= s["cal"] <= 0.8


def test_same_shape_at_two_levels_is_gaussian_dissimilar_but_fully_correlated():
    shape = torch.zeros(2, 2)
    shape[0, 0] = 1.0  # one bright cell
    maps = torch.stack([0.2 + 0.1 * shape, 0.6 + 0.3 * shape])[None]  # (1, 2, 2, 2): same place, levels 0.2 / 0.6
    # (M_i - M_j)^2 >= 0.16 on every cell, so exp(-d / 0.01) < 1e-6: CAL sees two different maps
    assert diversity_of_maps(maps).mean_gaussian[0] == pytest.approx(0.0, abs=1e-6)
    assert map_correlation(maps)[0] == pytest.approx(1.0)


def test_disjoint_spots_anticorrelate_and_a_flat_map_counts_zero():
    a, b, flat = torch.zeros(4), torch.zeros(4), torch.full((4,), 0.5)
    a[0], b[3] = 1.0, 1.0
    # a and b: centred (3/4, -1/4, -1/4, -1/4) and (-1/4, -1/4, -1/4, 3/4) -> dot -1/4 over norm^2 3/4 = -1/3
    assert map_correlation(torch.stack([a, b]).view(1, 2, 2, 2))[0] == pytest.approx(-1 / 3)
    assert map_correlation(torch.stack([a, flat]).view(1, 2, 2, 2))[0] == pytest.approx(0.0)
