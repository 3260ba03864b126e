"""The embedded default model: the light CQA-Face trained by this project on CelebA-299.

``load_default()`` needs no path: the weights ship inside the package
(``cqa_core/weights/default.safetensors``, with their ModelConfig in the file's metadata).
The workbench, the notebooks and ``cqa eval`` use it unless ``--checkpoint`` or the
environment variable ``CQA_CHECKPOINT`` names another model. How it was trained and what it
scores: ``docs/model_card.md``.
"""

from __future__ import annotations

from pathlib import Path

import torch

DEFAULT_WEIGHTS = Path(__file__).resolve().parents[1] / "weights" / "default.safetensors"


def load_default(device: str | torch.device = "cpu"):
    """The bundled default CQA-Face model, in eval mode on ``device``."""
    from cqa_core.checkpoint import load_model

    if not DEFAULT_WEIGHTS.exists():
        raise FileNotFoundError(f"the default weights are missing from this install: {DEFAULT_WEIGHTS}")
    return load_model(DEFAULT_WEIGHTS, device)
