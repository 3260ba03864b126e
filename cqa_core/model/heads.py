"""Margin heads: class logits from embeddings, separate from the model (insightface style).

Both normalise embeddings and class centres, compute cos(theta) (B, K), apply their margin to
the target class only and rescale by s; the criterion applies cross-entropy.

    CosFace (Eq. 8):  s * (cos(theta_y) - m)       on the target, s * cos(theta_j) elsewhere
    ArcFace:          s * cos(theta_y + m)         (with the usual easy-margin-free fallback)
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class MarginHead(nn.Module):
    """Shared base: normalised class centres W (K, D) and cosine logits."""

    def __init__(self, embedding_size: int, num_classes: int, scale: float, margin: float) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(num_classes, embedding_size))
        nn.init.normal_(self.weight, std=0.01)
        self.scale = scale
        self.margin = margin

    def cosine(self, embedding: torch.Tensor) -> torch.Tensor:
        """(B, D) -> cos(theta) (B, K) between each embedding and each class centre."""
        return F.linear(F.normalize(embedding.float()), F.normalize(self.weight.float()))  # (B, K)

    def apply_margin(self, cos: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, embedding: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """Logits (B, K). Without labels (inference) no margin is applied."""
        cos = self.cosine(embedding)  # (B, K)
        if labels is None:
            return cos * self.scale
        return self.apply_margin(cos, labels) * self.scale


class CosFace(MarginHead):
    """Large-margin cosine loss head (Eq. 8): subtract m from the target cosine."""

    def __init__(self, embedding_size: int, num_classes: int, scale: float = 64.0, margin: float = 0.35) -> None:
        super().__init__(embedding_size, num_classes, scale, margin)

    def apply_margin(self, cos: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        onehot = F.one_hot(labels, cos.shape[1]).to(cos.dtype)  # (B, K)
        return cos - self.margin * onehot  # (B, K)


class ArcFace(MarginHead):
    """Additive angular margin head: cos(theta_y + m) on the target class.

    Where theta_y + m > pi the cosine is no longer monotonic; as in insightface's
    ``ArcFace`` (easy_margin=False) the target falls back to cos(theta_y) - m*sin(m) there.
    """

    def __init__(self, embedding_size: int, num_classes: int, scale: float = 64.0, margin: float = 0.5) -> None:
        super().__init__(embedding_size, num_classes, scale, margin)

    def apply_margin(self, cos: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        target = cos.gather(1, labels[:, None])  # (B, 1)
        sin = torch.sqrt((1.0 - target * target).clamp_min(1e-7))  # (B, 1)
        with_margin = target * math.cos(self.margin) - sin * math.sin(self.margin)  # (B, 1)
        threshold = math.cos(math.pi - self.margin)
        with_margin = torch.where(target > threshold, with_margin, target - math.sin(math.pi - self.margin) * self.margin)
        return cos.scatter(1, labels[:, None], with_margin)  # (B, K)


def create_head(name: str, embedding_size: int, num_classes: int, scale: float, margin: float) -> MarginHead:
    """Build a margin head by name (``cosface`` or ``arcface``)."""
    heads = {"cosface": CosFace, "arcface": ArcFace}
    if name not in heads:
        raise ValueError(f"unknown head {name!r}; choose cosface or arcface")
    return heads[name](embedding_size, num_classes, scale=scale, margin=margin)
