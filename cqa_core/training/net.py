"""The module DDP wraps: model + margin head (or Partial FC) + Eq. 9, and run seeding."""

from __future__ import annotations

import random

import torch
import torch.nn.functional as F
from torch import nn

from cqa_core.losses import CQACriterion, LossTerms
from cqa_core.model.partial_fc import PartialFC


class TrainNet(nn.Module):
    """Model + margin head + Eq. 9 in one module, so DDP syncs the head's gradients too."""

    def __init__(self, model: nn.Module, criterion: CQACriterion, pfc: PartialFC | None) -> None:
        super().__init__()
        self.model, self.criterion, self.pfc = model, criterion, pfc

    def forward(self, images: torch.Tensor, labels: torch.Tensor, all_labels: torch.Tensor) -> tuple[LossTerms, torch.Tensor]:
        """Loss terms and the count of correct top-1 margin-logit predictions."""
        out = self.model(images)
        if self.pfc is None:
            terms = self.criterion(out, labels)
            target = labels
        else:
            logits, target = self.pfc(out.embedding, labels, all_labels)  # (B, S), (B,)
            cls = F.cross_entropy(logits, target)
            div = self.criterion.diversity(out.attention_maps)
            terms = LossTerms(cls + self.criterion.config.lam * div, cls, div, logits)
        correct = (terms.logits.argmax(1) == target).sum()
        return terms, correct


def seed_everything(seed: int) -> None:
    """Seed python, numpy (when installed) and torch."""
    random.seed(seed)
    try:
        import numpy as np

        np.random.seed(seed % 2**32)
    except ImportError:  # the bare GPU image has torch, safetensors and tqdm only
        pass
    torch.manual_seed(seed)
