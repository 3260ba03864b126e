"""Losses of CQA-Face: CAL (Eq. 2), the L_D baseline (Eq. 3) and the overall objective (Eq. 9).

Both diversity losses take attention maps (B, b, h, w) and return the batch mean of
    2 / (b (b - 1)) * sum_{i < j} penalty(M_i, M_j).

How Eq. 2 becomes a scalar. The paper writes max(0, -t + exp(-(M_i - M_j)^2 / sigma)) without
saying how the map-valued (M_i - M_j)^2 is reduced. ``reduction`` chooses:

* ``"pixel"`` (default): the Gaussian and the hinge act per location, then the result is
  averaged over the h x w locations:
      mean_{h,w} max(0, exp(-(M_i[h,w] - M_j[h,w])^2 / sigma) - t).
  Reasons: (a) Eq. 2 has no norm sign, unlike Eq. 3's dist(M_i, M_j), so read literally the
  expression is element-wise; (b) the paper argues CAL beats L_D because the Euclidean
  distance is "sensitive to scales" and lets a few noisy high responses dominate. A per-location
  Gaussian bounds each location's penalty to [0, 1 - t], which is exactly that robustness;
  a Gaussian of a whole-map distance would not have it; (c) with sigma = 0.01 a location stops
  being penalised once the two maps differ there by sqrt(sigma ln(1/t)) = 0.127, a sensible
  step on a [0, 1] attention scale, independent of the map size h x w.
* ``"map"``: reduce first, Gaussian after:
      max(0, exp(-mean_{h,w} (M_i - M_j)^2 / sigma) - t)
  i.e. a Gaussian kernel on the mean squared distance. Identical maps give the same 1 - t.

Eq. 3 uses dist = the Euclidean (L2) distance between the flattened maps; its margin is
``LossConfig.ld_margin`` (default t * sqrt(h w), i.e. t per location; see the config).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from cqa_core.config import UNLABELLED, LossConfig
from cqa_core.model.cqa_face import CQAOutput
from cqa_core.model.heads import MarginHead


def _pairs(b: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices (i, j) of the b (b - 1) / 2 pairs with i < j."""
    return torch.triu_indices(b, b, offset=1, device=device)


def _mean_over_pairs(penalty: torch.Tensor) -> torch.Tensor:
    """(B, P) pair penalties -> batch mean of 2 / (b (b-1)) sum_pairs, i.e. mean over pairs."""
    if penalty.shape[1] == 0:  # b = 1: no pairs, no diversity to enforce
        return penalty.sum() * 0.0
    return penalty.mean(dim=1).mean()


def cal_penalty(m_i: torch.Tensor, m_j: torch.Tensor, sigma: float = 0.01, t: float = 0.2,
                reduction: str = "pixel") -> torch.Tensor:
    """The term Eq. 2 sums for a pair of maps: (..., h, w), (..., h, w) -> (...).

    The one place Eq. 2's Gaussian is written; ``cal_loss`` and the explanation engine's
    diversity matrix both call it.
    """
    diff2 = (m_i - m_j).pow(2).flatten(-2)  # (..., h*w)
    if reduction == "pixel":
        return F.relu(torch.exp(-diff2 / sigma) - t).mean(dim=-1)  # (...)
    if reduction == "map":
        return F.relu(torch.exp(-diff2.mean(dim=-1) / sigma) - t)  # (...)
    raise ValueError(f"unknown CAL reduction {reduction!r}; choose 'pixel' or 'map'")


def cal_penalty_matrix(maps: torch.Tensor, sigma: float = 0.01, t: float = 0.2,
                       reduction: str = "pixel") -> torch.Tensor:
    """maps (B, b, h, w) -> (B, b, b) penalty of every pair (diagonal: a map against itself)."""
    return cal_penalty(maps[:, :, None], maps[:, None], sigma, t, reduction)  # (B, b, b)


def cal_loss(maps: torch.Tensor, sigma: float = 0.01, t: float = 0.2, reduction: str = "pixel") -> torch.Tensor:
    """Contrastive attention loss, Eq. 2 (batch mean). See the module docstring for ``reduction``."""
    i, j = _pairs(maps.shape[1], maps.device)
    return _mean_over_pairs(cal_penalty(maps[:, i], maps[:, j], sigma, t, reduction))  # (B, P) -> ()


def peak_normalise(maps: torch.Tensor) -> torch.Tensor:
    """Each map divided by its own maximum over the h x w cells (``LossConfig.cal_peak_norm``)."""
    return maps / maps.amax(dim=(-2, -1), keepdim=True).clamp_min(1e-6)  # (..., h, w) peak 1


def ld_loss(maps: torch.Tensor, t: float = 0.2) -> torch.Tensor:
    """Diverse-learning loss L_D, Eq. 3 (batch mean): hinge on the Euclidean map distance."""
    i, j = _pairs(maps.shape[1], maps.device)
    sq = (maps[:, i] - maps[:, j]).pow(2).flatten(2).sum(dim=2)  # (B, P)
    # sqrt has an infinite derivative at 0; the clamp only changes values below 1e-6 distance
    dist = sq.clamp_min(1e-12).sqrt()  # (B, P)
    return _mean_over_pairs(F.relu(t - dist))


def quality_targets(maps: torch.Tensor, visibility: torch.Tensor) -> torch.Tensor:
    """Visible share of each branch's attention: maps (B, b, h, w), visibility (B, H, W) in [0, 1] -> (B, b).

    V is area-pooled to the maps' h x w; target_i = sum(M_i V) / sum(M_i), with M detached (the
    target says what the branch sees, it does not move where the branch looks).
    """
    vis = F.adaptive_avg_pool2d(visibility[:, None].float(), maps.shape[-2:])[:, 0]  # (B, h, w)
    m = maps.detach().float()  # (B, b, h, w)
    return (m * vis[:, None]).sum((-2, -1)) / m.sum((-2, -1)).clamp_min(1e-6)  # (B, b)


def quality_loss(quality: torch.Tensor, maps: torch.Tensor, visibility: torch.Tensor) -> torch.Tensor:
    """Our QAN supervision (``LossConfig.quality_weight``): BCE of S_hat (B, b) on :func:`quality_targets`."""
    target = quality_targets(maps, visibility)  # (B, b)
    return F.binary_cross_entropy(quality.float().clamp(1e-6, 1 - 1e-6), target)




class LossTerms(NamedTuple):
    total: torch.Tensor  # L_Cls + lambda * L_div  (Eq. 9)
    cls: torch.Tensor  # CosFace / ArcFace cross-entropy (Eq. 8)
    diversity: torch.Tensor  # L_CAL, L_D or 0
    logits: torch.Tensor  # (B, K) margin logits, for accuracy


class CQACriterion(nn.Module):
    """Eq. 9: L = w * L_Cls + lambda * L_CAL (or L_D, or nothing, per ``LossConfig.diversity``);
    w = ``LossConfig.cls_weight``, 1 in the paper."""

    def __init__(self, config: LossConfig, head: MarginHead) -> None:
        super().__init__()
        self.config = config
        self.head = head

    def diversity(self, maps: torch.Tensor) -> torch.Tensor:
        c = self.config
        maps = maps.float()
        if c.diversity == "cal":
            if c.cal_peak_norm:  # compare where maps peak, not their levels (LossConfig.cal_peak_norm)
                maps = peak_normalise(maps)  # (B, b, h, w) peak 1
            return cal_loss(maps, c.sigma, c.t, c.cal_reduction)
        if c.diversity == "ld":
            margin = c.ld_margin if c.ld_margin is not None else c.t * (maps.shape[-2] * maps.shape[-1]) ** 0.5
            return ld_loss(maps, margin)
        return maps.sum() * 0.0

    def combine(self, cls: torch.Tensor, div: torch.Tensor, logits: torch.Tensor) -> LossTerms:
        """Eq. 9's total from its terms: ``cls_weight * cls + lambda * div``."""
        return LossTerms(self.config.cls_weight * cls + self.config.lam * div, cls, div, logits)

    def forward(self, output: CQAOutput, labels: torch.Tensor) -> LossTerms:
        """Eq. 9 over the batch; rows labelled :data:`UNLABELLED` (teacher-labelled mixes) add no
        margin loss (their logits use class 0's margin and are ignored), and L_Cls is the mean
        over the labelled rows (0 when there are none)."""
        labelled = labels != UNLABELLED  # (B,)
        logits = self.head(output.embedding, torch.where(labelled, labels, 0))  # (B, K)
        per_row = F.cross_entropy(logits, labels, ignore_index=UNLABELLED, reduction="none")  # (B,) 0 if ignored
        cls = per_row.sum() / labelled.sum().clamp(min=1)
        div = self.diversity(output.attention_maps)
        return self.combine(cls, div, logits)
