"""CQA-Face as a Recognizer: white-box (the stem output is its Grad-CAM layer) with a branch readout.

Its preprocessing is the project's own (``cqa_core.preprocess``: RGB, (x - 127.5) / 127.5, the
ArcFace template at 112 x 112), so its chip is the aligned face itself. What it shows beyond the
embedding (branch attention M_i, QAN quality S_hat_i, the relation matrix A) comes from
:class:`BranchReadout`: the model's own ``CQAOutput``, read in the same forward pass as the
embedding (``Recognizer.read``); ``cqa_core.explain.branches`` turns it into what the views show.
"""

from __future__ import annotations

import torch
from torch import nn

from cqa_core.model.cqa_face import CQAFace, CQAOutput
from cqa_core.recognizers.base import Preprocess, Recognizer

LAYER = "model.stem"
"""The Grad-CAM layer of a CQA-Face recognizer: the stem, whose output is ``CQAOutput.feature_map``."""
CHIP_MS = {"light": 2.0}
"""About how long one chip's forward takes on a CPU, by stem (others: an iResNet's ~60 ms)."""


class Embedding(nn.Module):
    """A CQA-Face returning only its embedding (N, 512): what generic explainers differentiate."""

    def __init__(self, model: CQAFace) -> None:
        super().__init__()
        self.model = model
        self.training = model.training  # the wrapper adds no mode of its own

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x).embedding  # (N, 512)


class BranchReadout:
    """CQA-Face's readout (``recognizers.base.Readout``): its whole ``CQAOutput`` for a batch."""

    def __init__(self, model: CQAFace) -> None:
        self.model = model
        self.count = model.config.branches

    def read(self, x: torch.Tensor) -> CQAOutput:
        """Preprocessed faces (N, 3, 112, 112) -> CQAOutput (embedding (N, 512), attention (N, b, h, w), ...)."""
        return self.model(x)


def from_cqa(model: CQAFace, name: str = "CQA-Face", source: str | None = None, note: str | None = None) -> Recognizer:
    """A CQA-Face model as a Recognizer (white-box at its stem, with its branch readout).

    ``note``: the line shown beside its name (default: its stem, branches and QAN)."""
    c = model.config
    return Recognizer(name=name, kind="cqa-face", preprocess=Preprocess(), module=Embedding(model), layer=LAYER,
                      readout=BranchReadout(model), source=source, chip_ms=CHIP_MS.get(c.stem, 60.0),
                      note=note or f"{c.stem} stem, b={c.branches}, {'QAN' if c.qan else 'no QAN'}")
