"""Partial FC: a margin head that scores each batch against a sample of the class centres.

After insightface's ``PartialFC_V2`` (An et al., "Partial FC", 2021): with hundreds of thousands
of identities the (B, K) logits and the K x D softmax gradient dominate a step. Each step keeps
every class present in the (global) batch plus random negatives, ``rate * K`` centres in all,
and applies the usual CosFace / ArcFace margin and softmax over that subset only.

What differs from insightface: centres are not sharded across GPUs (each process holds all K
and DDP all-reduces their gradient, rows outside the sample being zero); positive labels are
gathered from every process so all ranks score the same subset; negatives come from a
generator keyed on (seed, step) so the sample is identical on every rank and on resume.
"""

from __future__ import annotations

import torch
from torch import nn

from cqa_core.model.heads import MarginHead, create_head


class PartialFC(nn.Module):
    """Sampled-centre wrapper around a margin head.

    Args:
        head: the full head (its ``weight`` (K, D) holds all class centres).
        rate: fraction of centres used per step (1.0 = all: identical to the plain head).
        seed: base seed of the negative sampling.
    """

    def __init__(self, head: MarginHead, rate: float, seed: int = 0) -> None:
        super().__init__()
        self.head = head
        self.rate = rate
        self.seed = seed
        self.step = 0  # the trainer sets this before each forward

    @property
    def weight(self) -> nn.Parameter:
        return self.head.weight

    def sample(self, labels: torch.Tensor, all_labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Class subset (S,) containing every label of ``all_labels``, and ``labels`` remapped into it."""
        k = self.head.weight.shape[0]
        num = max(int(self.rate * k), 1)
        positive = torch.unique(all_labels)  # (P,) sorted
        if num <= positive.numel() or self.rate >= 1.0:
            index = positive if self.rate < 1.0 else torch.arange(k, device=labels.device)
        else:
            gen = torch.Generator(device="cpu").manual_seed(self.seed * 1_000_003 + self.step)
            score = torch.rand(k, generator=gen).to(labels.device)  # (K,)
            score[positive] = 2.0  # positives always kept
            index = torch.topk(score, num, sorted=False).indices.sort().values  # (S,)
        remapped = torch.searchsorted(index, labels)  # (B,) position of each label in index
        return index, remapped

    def forward(
        self, embedding: torch.Tensor, labels: torch.Tensor | None = None, all_labels: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Margin logits (B, S) over the sampled centres and the labels (B,) remapped into them."""
        if labels is None:
            return self.head(embedding), labels
        index, remapped = self.sample(labels, labels if all_labels is None else all_labels)
        w = self.head.weight[index]  # (S, D)
        cos = torch.nn.functional.linear(
            torch.nn.functional.normalize(embedding.float()), torch.nn.functional.normalize(w.float())
        )  # (B, S)
        return self.head.apply_margin(cos, remapped) * self.head.scale, remapped


def create_partial_fc(name: str, embedding_size: int, num_classes: int, scale: float, margin: float,
                      rate: float, seed: int = 0) -> PartialFC:
    """A PartialFC over a fresh ``cosface`` / ``arcface`` head."""
    return PartialFC(create_head(name, embedding_size, num_classes, scale, margin), rate, seed)
