"""Overall quality and the occlusion probe on a stub model whose answers are worked out by hand."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from cqa_core.explain.quality import occlusion_probe, overall_quality


def test_overall_quality_is_the_attention_mass_weighted_mean() -> None:
    q = np.array([0.9, 0.1])
    maps = np.zeros((2, 2, 2))
    maps[0] = 1.0  # mass 4
    maps[1, 0, 0] = 1.0  # mass 1
    assert overall_quality(q, maps) == pytest.approx((4 * 0.9 + 1 * 0.1) / 5)


class HalfStub(torch.nn.Module):
    """Branch 0 looks at the top half, branch 1 at the bottom half (7 x 7 maps); a branch's quality
    is the fraction of its half's pixels that are not black."""

    def __init__(self) -> None:
        super().__init__()
        self.p = torch.nn.Parameter(torch.zeros(()))

    def forward(self, x: torch.Tensor) -> SimpleNamespace:
        maps = torch.zeros(len(x), 2, 7, 7)  # (B, 2, 7, 7)
        maps[:, 0, :3] = 1.0
        maps[:, 1, 4:] = 1.0
        lit = (x > -1.0).float().mean(1)  # (B, 112, 112): 1 where the pixel is not black
        q = torch.stack([lit[:, :56].mean((1, 2)), lit[:, 56:].mean((1, 2))], 1)  # (B, 2)
        return SimpleNamespace(quality=q, attention_maps=maps)


def test_probe_finds_the_covered_branch_and_the_fall() -> None:
    clean = np.full((3, 112, 112, 3), 200, np.uint8)
    occluded = clean.copy()
    occluded[:, 56:] = 0  # bottom half black
    alpha = np.zeros((3, 112, 112), np.float32)
    alpha[:, 56:] = 1.0
    probe = occlusion_probe(HalfStub(), clean, occluded, alpha, batch_size=2)  # 2 batches: 2 + 1 faces
    np.testing.assert_allclose(probe.quality_clean, 1.0)
    np.testing.assert_allclose(probe.quality_occluded, [[1.0, 0.0]] * 3)
    assert probe.share[:, 1].min() > 0.99 and probe.share[:, 0].max() < 0.01
    assert probe.most_loses_more == 1.0 and probe.overall_falls == 1.0
    assert probe.median_most_change == pytest.approx(-1.0)
    assert probe.median_overall_change == pytest.approx(-0.5)  # equal masses: (1 + 0) / 2 - 1
