"""CQA-Face as a Recognizer: white-box (the stem output is its Grad-CAM layer) with branches and QAN.

Its preprocessing is the project's own (``cqa_core.preprocess``: RGB, (x - 127.5) / 127.5, the
ArcFace template at 112 x 112), so its chip is the aligned face itself and every analysis of it is
what the workbench computed before recognizers existed.
"""

from __future__ import annotations

import torch
from torch import nn

from cqa_core.model.cqa_face import CQAFace
from cqa_core.recognizers.base import Preprocess, Recognizer

LAYER = "model.stem"
"""The Grad-CAM layer of a CQA-Face recognizer: the stem, whose output is ``CQAOutput.feature_map``."""


class Embedding(nn.Module):
    """A CQA-Face returning only its embedding (N, 512): what generic explainers differentiate."""

    def __init__(self, model: CQAFace) -> None:
        super().__init__()
        self.model = model
        self.training = model.training  # the wrapper adds no mode of its own

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x).embedding  # (N, 512)


def weights_key(model: nn.Module) -> str:
    """Identity of a model's current weights: object id + in-place update counters (training changes it).

    Cheap, and valid only in this process (:func:`in_memory_key` tells such a key apart)."""
    versions = sum(t._version for t in model.state_dict(keep_vars=True).values())
    return f"cqa:{id(model)}:{versions}"


def in_memory_key(digest: str) -> bool:
    """Whether ``digest`` is a :func:`weights_key` (names an object in memory, not its weights)."""
    return digest.startswith("cqa:")


def from_cqa(model: CQAFace, name: str = "CQA-Face", source: str | None = None) -> Recognizer:
    """A CQA-Face model as a Recognizer (``cqa`` set: branch attention and QAN quality)."""
    c = model.config
    return Recognizer(name=name, kind="cqa-face", preprocess=Preprocess(), module=Embedding(model), layer=LAYER,
                      cqa=model, source=source, digest=weights_key(model),
                      note=f"{c.stem} stem, b={c.branches}, {'QAN' if c.qan else 'no QAN'}")
