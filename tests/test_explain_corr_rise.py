"""CorrRISE (Lu, Xu & Ebrahimi, WACV 2024) on a toy recognizer whose embedding reads only the left half
of the chip: the similar region must be the left half. The correlation itself is checked against
numpy's corrcoef on the very masks and scores."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from cqa_core.explain.blackbox import rise_masks, similarity_forward
from cqa_core.explain.common import ExplainError
from cqa_core.explain.corr_rise import corr_rise
from cqa_core.recognizers.base import Preprocess, Recognizer

S = 112
HALF = S // 2
CONST = 60.0
PRE = Preprocess(size=S, template="arcface", mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))


def left_embed(chips: np.ndarray) -> np.ndarray:
    """(N, S, S, 3) uint8 -> (N, 2): (mean of the left half - 127.5, CONST); the right half is never read."""
    left = chips[:, :, :HALF].astype(np.float64).mean(axis=(1, 2, 3)) - 127.5  # (N,)
    return np.stack([left, np.full(len(chips), CONST)], axis=1).astype(np.float32)  # (N, 2)


class LeftModule(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        left = x[:, :, :, :HALF].mean(dim=(1, 2, 3)) - 127.5  # (N,)
        return torch.stack([left, torch.full_like(left, CONST)], dim=1)  # (N, 2)


@pytest.fixture(scope="module")
def pair() -> np.ndarray:
    """Face a: bright left half (the partner's embedding direction), textured right half; b = a."""
    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, (S, S, 3), dtype=np.uint8)
    a[:, :HALF] = 255  # e_a = (127.5, 60): greying the left half turns e away from e_b
    return np.stack([a, a])  # (2, S, S, 3)


def test_similar_region_is_the_left_half_black_box(pair):
    rec = Recognizer(name="left", kind="torch", preprocess=PRE, embed_fn=left_embed)
    m = corr_rise(rec, pair[:1], pair[1:], masks=300)[0]  # (S, S)
    left, right = m[:, :HALF - 16], m[:, HALF + 16:]  # away from the seam (a mask cell is 16 px)
    assert left.mean() > 0.15 and (left > 0).mean() > 0.95
    assert abs(right.mean()) < 0.05  # right pixels are independent of the score: noise ~ 1 / sqrt(300)
    assert left.min() > right.max() - 0.1 and (m >= -1).all() and (m <= 1).all()


def test_module_path_agrees_with_the_embed_path(pair):
    rec_bb = Recognizer(name="left", kind="torch", preprocess=PRE, embed_fn=left_embed)
    rec_wb = Recognizer(name="left module", kind="torch", preprocess=PRE, module=LeftModule())
    a = corr_rise(rec_bb, pair[:1], pair[1:], masks=64, batch=20)
    b = corr_rise(rec_wb, pair[:1], pair[1:], masks=64, batch=64)  # other batching, same masks
    assert np.corrcoef(a.ravel(), b.ravel())[0, 1] > 0.95  # uint8 rounding on the embed path only


def test_equals_numpy_corrcoef_over_the_same_masks(pair):
    rec = Recognizer(name="left module", kind="torch", preprocess=PRE, module=LeftModule())
    n = 40
    got = corr_rise(rec, pair[:1], pair[1:], masks=n, seed=3, batch=7)[0]
    masks = rise_masks(n, S, seed=3)  # (n, 1, S, S): the sampler corr_rise reuses
    x = torch.from_numpy(pair[:1]).permute(0, 3, 1, 2).float()  # (1, 3, S, S)
    ref = LeftModule()(x)[0]  # (2,)
    scores = similarity_forward(rec, ref)(x * masks + 127.5 * (1 - masks)).numpy()  # (n,)
    for (i, j) in [(10, 10), (60, 20), (100, 30), (50, 100)]:
        want = np.corrcoef(masks[:, 0, i, j].numpy(), scores)[0, 1]
        assert got[i, j] == pytest.approx(want, abs=1e-4)


def test_seeded_and_counted(pair):
    rec = Recognizer(name="left module", kind="torch", preprocess=PRE, module=LeftModule())
    seen = []
    a = corr_rise(rec, pair, pair[::-1].copy(), masks=30, batch=8, progress=lambda d, t: seen.append((d, t)))
    b = corr_rise(rec, pair, pair[::-1].copy(), masks=30, batch=16)
    np.testing.assert_allclose(a, b, atol=1e-6)  # the same masks whatever the batching
    assert a.shape == (2, S, S) and seen[-1] == (60, 60)
    with pytest.raises(ExplainError, match="at least 2 masks"):
        corr_rise(rec, pair[:1], pair[1:], masks=1)
