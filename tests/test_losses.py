"""Eq. 2 (CAL) and Eq. 3 (L_D) on 2x2 maps, worked out by hand in the comments."""

import math

import pytest
import torch

from cqa_core.config import LossConfig
from cqa_core.losses import CQACriterion, cal_loss, ld_loss
from cqa_core.model.cqa_face import CQAOutput
from cqa_core.model.heads import CosFace

SIGMA, T = 0.01, 0.2


def maps_of(*grids):
    """Stack 2x2 grids into (1, b, 2, 2) maps."""
    return torch.tensor([grids], dtype=torch.float32)


def test_cal_identical_maps_give_exp0_minus_t():
    # every location: exp(-0 / sigma) - t = 1 - 0.2 = 0.8; one pair, factor 2/(2*1) = 1
    m = maps_of([[0.3, 0.7], [0.1, 0.9]], [[0.3, 0.7], [0.1, 0.9]])
    assert cal_loss(m, SIGMA, T).item() == pytest.approx(0.8, abs=1e-6)
    assert cal_loss(m, SIGMA, T, reduction="map").item() == pytest.approx(0.8, abs=1e-6)


def test_cal_three_identical_maps_average_pairs():
    # 3 pairs each 0.8, times 2/(3*2) = 1/3, sum = 0.8
    g = [[0.5, 0.5], [0.5, 0.5]]
    assert cal_loss(maps_of(g, g, g), SIGMA, T).item() == pytest.approx(0.8, abs=1e-6)


def test_cal_pixel_reduction_by_hand():
    # M1 = 0 everywhere, M2 differs by 0.1 at one location:
    #   three locations: exp(0) - 0.2 = 0.8
    #   one location: exp(-0.01 / 0.01) - 0.2 = exp(-1) - 0.2 = 0.16788
    #   mean over 4 locations = (3 * 0.8 + 0.16788) / 4 = 0.64197
    m = maps_of([[0, 0], [0, 0]], [[0, 0], [0, 0.1]])
    expected = (3 * 0.8 + math.exp(-1) - 0.2) / 4
    assert cal_loss(m, SIGMA, T).item() == pytest.approx(expected, abs=1e-6)


def test_cal_map_reduction_by_hand():
    # mean squared difference = 0.01 / 4 = 0.0025; exp(-0.0025 / 0.01) - 0.2 = exp(-0.25) - 0.2 = 0.57880
    m = maps_of([[0, 0], [0, 0]], [[0, 0], [0, 0.1]])
    assert cal_loss(m, SIGMA, T, reduction="map").item() == pytest.approx(math.exp(-0.25) - 0.2, abs=1e-6)


def test_cal_hinge_clips_far_apart_maps_to_zero():
    # difference 0.5 everywhere: exp(-0.25 / 0.01) = exp(-25) ~ 1e-11 < t, so max(0, .) = 0
    m = maps_of([[0, 0], [0, 0]], [[0.5, 0.5], [0.5, 0.5]])
    assert cal_loss(m, SIGMA, T).item() == 0.0


def test_cal_is_batch_mean():
    # sample 1: identical (0.8); sample 2: far apart (0) -> batch mean 0.4
    same = [[[0, 0], [0, 0]], [[0, 0], [0, 0]]]
    far = [[[0, 0], [0, 0]], [[1, 1], [1, 1]]]
    m = torch.tensor([same, far], dtype=torch.float32)
    assert cal_loss(m, SIGMA, T).item() == pytest.approx(0.4, abs=1e-6)


def test_cal_unknown_reduction_is_refused():
    with pytest.raises(ValueError, match="reduction"):
        cal_loss(torch.zeros(1, 2, 2, 2), reduction="sum")


def test_ld_by_hand():
    # dist([[0,0],[0,0]], [[0.1,0],[0,0]]) = 0.1 -> max(0, 0.2 - 0.1) = 0.1
    assert ld_loss(maps_of([[0, 0], [0, 0]], [[0.1, 0], [0, 0]]), t=T).item() == pytest.approx(0.1, abs=1e-6)
    # dist = sqrt(0.3^2 + 0.4^2) = 0.5 > t -> 0
    assert ld_loss(maps_of([[0, 0], [0, 0]], [[0.3, 0.4], [0, 0]]), t=T).item() == pytest.approx(0.0, abs=1e-7)
    # identical maps: dist 0 -> t = 0.2, and the gradient is finite
    m = maps_of([[0.2, 0.2], [0.2, 0.2]], [[0.2, 0.2], [0.2, 0.2]]).requires_grad_()
    loss = ld_loss(m, t=T)
    loss.backward()
    assert loss.item() == pytest.approx(0.2, abs=1e-6)
    assert torch.isfinite(m.grad).all()


def test_single_branch_has_no_pairs():
    assert cal_loss(torch.rand(2, 1, 3, 3)).item() == 0.0
    assert ld_loss(torch.rand(2, 1, 3, 3)).item() == 0.0


def test_criterion_adds_lambda_times_cal():
    # identical maps: L_CAL = 0.8; lambda 0.5 -> total = cls + 0.4
    head = CosFace(2, 2)
    with torch.no_grad():
        head.weight.copy_(torch.eye(2))
    maps = torch.full((2, 2, 2, 2), 0.5)
    emb = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    out = CQAOutput(emb, torch.zeros(2, 1, 2, 2), maps, torch.zeros(2, 2, 1), torch.ones(2, 2), torch.zeros(2, 2, 2))
    labels = torch.tensor([0, 1])
    terms = CQACriterion(LossConfig(), head)(out, labels)
    assert terms.diversity.item() == pytest.approx(0.8, abs=1e-6)
    assert terms.total.item() == pytest.approx(terms.cls.item() + 0.4, abs=1e-5)
    # cls by hand: logits [64 * 0.65, 0] for both samples -> CE = log(1 + exp(-41.6))
    assert terms.cls.item() == pytest.approx(math.log1p(math.exp(-41.6)), abs=1e-6)
    none = CQACriterion(LossConfig(diversity="none"), head)(out, labels)
    assert none.total.item() == pytest.approx(none.cls.item())


def test_peak_norm_makes_cal_see_the_same_shape_at_two_levels():
    # maps [[1, .5], [.5, .5]] * 0.3 and * 0.9: every cell differs by >= 0.15, exp(-0.0225 / 0.01)
    # = 0.105 < t, so raw CAL is 0; divided by their peaks both are [[1, .5], [.5, .5]] -> 1 - t = 0.8
    shape = torch.tensor([[1.0, 0.5], [0.5, 0.5]])
    maps = torch.stack([0.3 * shape, 0.9 * shape])[None]  # (1, 2, 2, 2)
    crit = CQACriterion(LossConfig(), CosFace(2, 2))
    assert crit.diversity(maps).item() == pytest.approx(0.0, abs=1e-6)
    peak = CQACriterion(LossConfig(cal_peak_norm=True), CosFace(2, 2))
    assert peak.diversity(maps).item() == pytest.approx(1 - T, abs=1e-6)


def test_cls_weight_scales_only_the_margin_loss():
    # identical maps: L_CAL = 0.8 (lambda 0.5 -> +0.4); margin 0.35 on logits of embedding [1, 1]
    # against weights e0, e1: cos = 0.7071 each; the target logit loses s * m = 64 * 0.35 = 22.4,
    # so CE = log(1 + exp(22.4)) = 22.4 + log1p(e^-22.4)
    head = CosFace(2, 2)
    with torch.no_grad():
        head.weight.copy_(torch.eye(2))
    maps = torch.full((1, 2, 2, 2), 0.5)
    out = CQAOutput(torch.tensor([[1.0, 1.0]]), torch.zeros(1, 1, 2, 2), maps, torch.zeros(1, 2, 1),
                    torch.ones(1, 2), torch.zeros(1, 2, 2))
    cls = 22.4 + math.log1p(math.exp(-22.4))
    for w in (1.0, 0.25, 0.0):
        terms = CQACriterion(LossConfig(cls_weight=w), head)(out, torch.tensor([0]))
        assert terms.cls.item() == pytest.approx(cls, rel=1e-4)  # reported unweighted
        assert terms.total.item() == pytest.approx(w * cls + 0.4, rel=1e-4)
    with pytest.raises(ValueError, match="cls_weight"):
        LossConfig(cls_weight=-1.0)


def reference_cal(maps, sigma, t):
    """Eq. 2 written as loops, for the default per-location reduction."""
    total = 0.0
    bsz, b = maps.shape[:2]
    for n in range(bsz):
        s = 0.0
        for i in range(b):
            for j in range(i + 1, b):
                g = torch.exp(-((maps[n, i] - maps[n, j]) ** 2) / sigma)
                s += torch.clamp(g - t, min=0).mean().item()
        total += 2.0 / (b * (b - 1)) * s
    return total / bsz


def reference_ld(maps, t):
    total = 0.0
    bsz, b = maps.shape[:2]
    for n in range(bsz):
        s = sum(max(0.0, t - torch.dist(maps[n, i], maps[n, j]).item()) for i in range(b) for j in range(i + 1, b))
        total += 2.0 / (b * (b - 1)) * s
    return total / bsz


def test_losses_match_loop_references_on_random_maps():
    g = torch.Generator().manual_seed(1)
    # near-identical maps so that both hinges are active somewhere
    base = torch.rand(3, 1, 7, 7, generator=g)
    maps = (base + 0.08 * torch.rand(3, 4, 7, 7, generator=g)).clamp(0, 1)
    assert cal_loss(maps, SIGMA, T).item() == pytest.approx(reference_cal(maps, SIGMA, T), rel=1e-5)
    assert 0 < cal_loss(maps, SIGMA, T).item() < 0.8
    small = 0.02 * torch.rand(3, 4, 2, 2, generator=g)
    assert ld_loss(small, T).item() == pytest.approx(reference_ld(small, T), rel=1e-5)
    assert ld_loss(small, T).item() > 0
