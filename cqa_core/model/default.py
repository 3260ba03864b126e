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


def resolve_model(checkpoint: str | None = None, device: str | torch.device = "cpu",
                  allow_untrained: bool = False):
    """The model a command or the workbench should use, and how to name it.

    Order: ``checkpoint``, else env ``CQA_CHECKPOINT``, else the bundled default model, else
    (only with ``allow_untrained``) an untrained light model, seed 0.

    Returns:
        (model in eval mode, label, untrained flag).
    """
    import os

    path = checkpoint or os.environ.get("CQA_CHECKPOINT")
    if path:
        from cqa_core.checkpoint import load_model

        return load_model(path, device), f"weights {Path(path).name}", False
    if DEFAULT_WEIGHTS.exists():
        return load_default(device), "default model", False
    if not allow_untrained:
        raise FileNotFoundError("no model: pass --checkpoint PATH or set CQA_CHECKPOINT (no default weights installed)")
    from cqa_core.config import ModelConfig
    from cqa_core.model.cqa_face import create_model

    torch.manual_seed(0)
    return create_model(ModelConfig(stem="light", branches=4)).to(device).eval(), "untrained light model (seed 0)", True
