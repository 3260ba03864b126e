"""The module DDP wraps: model + margin head (or Partial FC) + Eq. 9, and run seeding."""

from __future__ import annotations

import random

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from cqa_core.losses import CQACriterion, LossTerms, quality_loss
from cqa_core.training.distill import DistillLoss
from cqa_core.training.partial_fc import PartialFC


class TrainNet(nn.Module):
    """Model + margin head + Eq. 9 (+ our quality / distillation terms) in one module, so DDP
    syncs the head's and the distillation projection's gradients too. With ``from_features`` its
    input is the stem's output X (a frozen stem's, from ``training.feature_cache``), not images."""

    def __init__(self, model: nn.Module, criterion: CQACriterion, pfc: PartialFC | None,
                 distill: DistillLoss | None = None, distill_weights: tuple[float, float] = (0.0, 0.0),
                 from_features: bool = False) -> None:
        super().__init__()
        self.model, self.criterion, self.pfc, self.distill = model, criterion, pfc, distill
        self.distill_weights = distill_weights
        self.from_features = from_features

    def forward(self, images: torch.Tensor, labels: torch.Tensor, all_labels: torch.Tensor,
                visibility: torch.Tensor | None = None,
                target: torch.Tensor | None = None) -> tuple[LossTerms, torch.Tensor, torch.Tensor]:
        """Loss terms, the count of correct top-1 margin-logit predictions, and the extra terms
        (quality loss, distillation cosine loss, distillation relational loss) as a (3,) tensor.

        ``terms.total`` includes the extra terms with their weights.
        """
        out = self.model.head_features(images) if self.from_features else self.model(images)  # images or X
        if self.pfc is None:
            terms = self.criterion(out, labels)
            target_cls = labels
        else:
            logits, target_cls = self.pfc(out.embedding, labels, all_labels)  # (B, S), (B,)
            cls = F.cross_entropy(logits, target_cls)
            div = self.criterion.diversity(out.attention_maps)
            terms = self.criterion.combine(cls, div, logits)
        zero = terms.total.new_zeros(())
        qual = cos = rel = zero
        total = terms.total
        weight = self.criterion.config.quality_weight
        if weight > 0 and visibility is not None and self.model.qan is not None:
            qual = quality_loss(out.quality, out.attention_maps, visibility)
            total = total + weight * qual
        if self.distill is not None and target is not None:
            cos, rel = self.distill(out.embedding, target)
            total = total + self.distill_weights[0] * cos + self.distill_weights[1] * rel
        correct = (terms.logits.argmax(1) == target_cls).sum()
        return terms._replace(total=total), correct, torch.stack([qual, cos, rel]).detach()


def seed_everything(seed: int) -> None:
    """Seed python, numpy (when installed) and torch."""
    random.seed(seed)
    try:
        np.random.seed(seed % 2**32)
    except ImportError:  # the bare GPU image has torch, safetensors and tqdm only
        pass
    torch.manual_seed(seed)
