"""xSSAB (Huber et al., WACV 2024) on a hand-set linear embedder whose gradients are worked out on
paper, then on CQA-Face through its recognizer (shapes, signs, no side effects)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from cqa_core.explain.common import ExplainError
from cqa_core.explain.xssab import xssab, xssab_chips
from cqa_core.recognizers.base import Preprocess, Recognizer
from cqa_core.recognizers.cqa import from_cqa


class Pixels(nn.Module):
    """e = the two pixels of a (N, 1, 1, 2) image, through an identity Linear."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(2, 2, bias=False)
        with torch.no_grad():
            self.fc.weight.copy_(torch.eye(2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x.flatten(1))  # (N, 2)


A = torch.tensor([[[[3.0, 4.0]]]])  # n_a = (0.6, 0.8)
B = torch.tensor([[[[4.0, -3.0]]]])  # n_b = (0.8, -0.6): arguments (0.48, -0.48), cosine 0


def test_hand_computed_gradients_of_the_two_argument_sums():
    r = xssab(Pixels(), A, B)
    # S+ = n_0(x) 0.8, S- = n_1(x) (-0.6); d n / d x = (I - n n^T) / |x| with |x| = 5:
    # d n_0 = (1 - 0.36, -0.48) / 5 = (0.128, -0.096); d n_1 = (-0.096, 0.072)
    np.testing.assert_allclose(r.positive[0], [[0.8 * 0.128, 0.8 * 0.096]], atol=1e-6)
    np.testing.assert_allclose(r.negative[0], [[0.6 * 0.096, 0.6 * 0.072]], atol=1e-6)
    np.testing.assert_allclose(r.maps[0], r.positive[0] - r.negative[0], atol=1e-7)
    np.testing.assert_allclose(r.arguments[0], [0.48, -0.48], atol=1e-6)
    assert r.cosine == pytest.approx(0.0, abs=1e-6) and r.bound == 0.0
    # face b against a: same arguments; d n_b,0 = (1 - 0.64, 0.48) / 5, d n_b,1 = (0.48, 1 - 0.36) / 5
    np.testing.assert_allclose(r.positive[1], [[0.6 * 0.072, 0.6 * 0.096]], atol=1e-6)
    np.testing.assert_allclose(r.negative[1], [[0.8 * 0.096, 0.8 * 0.128]], atol=1e-6)


def test_a_threshold_moves_arguments_to_the_opposing_side():
    # bound = threshold / D = 1.0: 0.48 < 1, so both arguments oppose; S+ = 0 and its gradient vanishes
    r = xssab(Pixels(), A, B, threshold=2.0)
    assert r.bound == 1.0
    np.testing.assert_allclose(r.positive, 0.0, atol=1e-12)
    np.testing.assert_allclose(r.arguments[:, 0], 0.0, atol=1e-12)  # S+ is empty; S- holds the cosine
    np.testing.assert_allclose(r.arguments[:, 1], r.cosine, atol=1e-6)
    assert (r.maps <= 0).all()


def test_matching_pair_is_mostly_supported():
    a = torch.tensor([[[[3.0, 4.0]]]])
    b = torch.tensor([[[[6.0, 8.1]]]])  # nearly the same direction: both arguments support
    r = xssab(Pixels(), a, b)
    np.testing.assert_allclose(r.negative, 0.0, atol=1e-12)
    assert r.arguments[0, 0] == pytest.approx(r.cosine, abs=1e-6) and r.cosine > 0.99


def test_cqa_face_recognizer_maps_input_and_layer(calibrated_model):
    rec = from_cqa(calibrated_model)
    chips = np.random.default_rng(0).integers(0, 256, (2, 112, 112, 3), dtype=np.uint8)
    calibrated_model.train()
    before = [p.grad for p in calibrated_model.parameters()]
    r = xssab_chips(rec, chips)
    assert calibrated_model.training  # its mode came back
    calibrated_model.eval()
    assert all(p.grad is None for p in calibrated_model.parameters()) and all(g is None for g in before)
    assert r.maps.shape == r.positive.shape == (2, 112, 112)
    assert (r.positive >= 0).all() and (r.negative >= 0).all() and (r.maps > 0).any() and (r.maps < 0).any()
    e = rec.embed(chips)
    cos = float(e[0] @ e[1] / np.linalg.norm(e[0]) / np.linalg.norm(e[1]))
    assert r.arguments.sum(1) == pytest.approx([cos, cos], abs=1e-5)
    layer = xssab_chips(rec, chips, at_layer=True)  # gradients at the stem output X (7 x 7), upsampled
    assert layer.maps.shape == (2, 112, 112)
    np.testing.assert_allclose(layer.arguments, r.arguments, atol=1e-6)


def test_black_box_is_refused():
    rec = Recognizer(name="bb", kind="torch", preprocess=Preprocess(), embed_fn=lambda c: np.ones((len(c), 4)))
    with pytest.raises(ExplainError, match="black-box"):
        xssab_chips(rec, np.zeros((2, 112, 112, 3), np.uint8))
