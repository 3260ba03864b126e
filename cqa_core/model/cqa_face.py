"""CQA-Face (Fig. 2a): stem -> b LANet branches -> QAN -> concat -> FC-512 (+BN) -> embedding.

``CQAFace.forward`` returns a typed ``CQAOutput`` so every head, loss, explanation and widget
reads the same tensors the model computed; no forward hooks are needed.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

from cqa_core.config import ModelConfig
from cqa_core.model.backbones import create_stem
from cqa_core.model.lanet import BranchAttention
from cqa_core.model.qan import QAN


class CQAOutput(NamedTuple):
    """Everything one forward computes.

    embedding:      (B, 512) after FC-512 + BN (not L2-normalised).
    feature_map:    (B, C, h, w) stem output X, the layer CAMs are taken on.
    attention_maps: (B, b, h, w) M_i in [0, 1].
    local_features: (B, b, C) P_i = GAP(X * M_i), before quality weighting.
    quality:        (B, b) S_hat_i (Eq. 6); ones when QAN is off.
    relation:       (B, b, b) adjacency A (Eq. 4); zeros when QAN is off.
    """

    embedding: torch.Tensor
    feature_map: torch.Tensor
    attention_maps: torch.Tensor
    local_features: torch.Tensor
    quality: torch.Tensor
    relation: torch.Tensor


class CQAFace(nn.Module):
    """The CQA-Face model. Build it with :func:`create_model`."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        self.stem = create_stem(config.stem)
        c = self.stem.out_channels
        self.branches = BranchAttention(c, config.branches, config.lanet_reduction)
        self.qan = QAN(c, config.branches, config.qan_reduction, config.qan_hidden) if config.qan else None
        self.dropout = nn.Dropout(config.dropout)
        self.fc = nn.Linear(config.branches * c, config.embedding_size)
        self.features = nn.BatchNorm1d(config.embedding_size, eps=1e-5)

    def head_features(self, feature_map: torch.Tensor) -> CQAOutput:
        """Everything after the stem: X (B, C, h, w) -> CQAOutput.

        Split out so explanations can differentiate with respect to X without re-running the stem.
        """
        maps, local = self.branches(feature_map)  # (B, b, h, w), (B, b, C)
        bsz, b = local.shape[:2]
        if self.qan is not None:
            weighted, quality, relation = self.qan(local)  # (B, b, C), (B, b), (B, b, b)
        else:
            weighted = local  # (B, b, C)
            quality = local.new_ones(bsz, b)  # (B, b)
            relation = local.new_zeros(bsz, b, b)  # (B, b, b)
        flat = self.dropout(weighted.flatten(1))  # (B, b*C) concat of P_hat_1..P_hat_b
        embedding = self.features(self.fc(flat))  # (B, 512)
        return CQAOutput(embedding, feature_map, maps, local, quality, relation)

    def forward(self, images: torch.Tensor) -> CQAOutput:
        """images (B, 3, 112, 112) normalised RGB (see ``cqa_core.preprocess``) -> CQAOutput."""
        return self.head_features(self.stem(images))  # X: (B, C, 7, 7)


def create_model(config: ModelConfig | None = None, **overrides) -> CQAFace:
    """Build CQA-Face from a ModelConfig (fields may also be given as keywords)."""
    config = config or ModelConfig()
    if overrides:
        config = ModelConfig(**{**config.__dict__, **overrides})
    return CQAFace(config)
