"""Model weights on disk: safetensors + the ModelConfig as JSON metadata, written atomically.

A model file is one ``.safetensors`` whose metadata holds ``{"format": "cqa-face",
"model_config": <json>}``, so it can be rebuilt with no other file. A directory is accepted too
and read through its ``model.safetensors``. Nothing here unpickles: loading a pickle is refused.

The embedded default model (the light CQA-Face trained by this project on CelebA-299) ships in the
package as ``cqa_core/weights/default.safetensors``: :func:`load_default` needs no path, and
:func:`resolve_model` picks the model a command or the workbench uses (how it was trained and what
it scores: ``docs/model_card.md``).
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from cqa_core.config import ModelConfig, model_config_from_dict, to_dict
from cqa_core.model.cqa_face import CQAFace, create_model

FORMAT = "cqa-face"
DEFAULT_WEIGHTS = Path(__file__).resolve().parent / "weights" / "default.safetensors"
MODEL_FILE = "model.safetensors"


class CheckpointError(ValueError):
    """A file that is not a usable CQA-Face checkpoint (the message says why)."""


def file_digest(path: str | os.PathLike, algorithm: str = "sha1", length: int = 16) -> str:
    """The first ``length`` hex digits of a file's hash, read in 1 MB blocks (cache keys of weights files)."""
    h = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:length]


def atomic_write(path: str | os.PathLike, write: Callable[[str], None]) -> Path:
    """Call ``write(tmp_path)`` then rename onto ``path``: readers never see half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; a checkpoint is meant to be shared
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def state_tensors(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    """A state dict safetensors can store: contiguous CPU tensors, no shared storage."""
    return {k: v.detach().cpu().contiguous().clone() for k, v in module.state_dict().items()}


def save_model(path: str | os.PathLike, model: CQAFace, extra: dict[str, Any] | None = None) -> Path:
    """Write ``model``'s weights and config to ``path`` (a ``.safetensors`` file), atomically."""
    meta = {"format": FORMAT, "model_config": json.dumps(to_dict(model.config), sort_keys=True)}
    for key, value in (extra or {}).items():
        meta[key] = value if isinstance(value, str) else json.dumps(value)
    tensors = state_tensors(model)
    return atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata=meta))


def resolve(path: str | os.PathLike) -> Path:
    """A checkpoint path -> the safetensors file to read (a directory -> its model.safetensors)."""
    p = Path(path).expanduser()
    if p.is_dir():
        p = p / MODEL_FILE
    if not p.exists():
        raise CheckpointError(f"checkpoint not found: {p}")
    return p


def read_metadata(path: str | os.PathLike) -> dict[str, str]:
    """The metadata dict of a safetensors checkpoint, with a clear error for other files."""
    p = resolve(path)
    try:
        with safe_open(str(p), framework="pt") as f:
            return dict(f.metadata() or {})
    except Exception as exc:  # safetensors raises its own error types for garbage headers
        raise CheckpointError(
            f"{p} is not a safetensors file ({type(exc).__name__}: {exc}); CQA-Face loads only "
            "safetensors weights, never pickles"
        ) from exc


def load_model(path: str | os.PathLike, device: str | torch.device = "cpu") -> CQAFace:
    """Rebuild a CQA-Face model from a checkpoint, in eval mode."""
    p = resolve(path)
    meta = read_metadata(p)
    if meta.get("format") != FORMAT or "model_config" not in meta:
        raise CheckpointError(f"{p} is a safetensors file but not a CQA-Face checkpoint (no model_config)")
    config = model_config_from_dict(json.loads(meta["model_config"]))
    model = create_model(config)
    state = load_file(str(p), device="cpu")
    try:
        missing, unexpected = model.load_state_dict(state, strict=False)
    except RuntimeError as exc:  # shape mismatches
        raise CheckpointError(f"{p} does not fit the model its config describes: {exc}") from exc
    if missing or unexpected:
        raise CheckpointError(
            f"{p} does not match {config}: missing {sorted(missing)[:5]}, unexpected {sorted(unexpected)[:5]}"
        )
    return model.to(device).eval()


def model_config_of(path: str | os.PathLike) -> ModelConfig:
    """The ModelConfig stored in a checkpoint, without loading its weights."""
    meta = read_metadata(path)
    return model_config_from_dict(json.loads(meta["model_config"]))


def init_from_checkpoint(model: CQAFace, path: str | os.PathLike) -> CQAFace:
    """Load a CQA-Face checkpoint's weights into ``model`` (for ``TrainConfig.init_from``).

    Raises:
        ValueError: the checkpoint was written for a different ModelConfig.
    """
    saved = model_config_of(path)
    if saved != model.config:
        diff = {k: (v, getattr(model.config, k)) for k, v in saved.__dict__.items() if v != getattr(model.config, k)}
        raise ValueError(f"{path} holds a different model (checkpoint vs run: {diff}); set model.* to match")
    model.load_state_dict(load_file(str(resolve(path)), device="cpu"), strict=True)
    return model


def load_default(device: str | torch.device = "cpu") -> CQAFace:
    """The bundled default CQA-Face model, in eval mode on ``device``."""
    if not DEFAULT_WEIGHTS.exists():
        raise FileNotFoundError(f"the default weights are missing from this install: {DEFAULT_WEIGHTS}")
    return load_model(DEFAULT_WEIGHTS, device)


def resolve_model(checkpoint: str | os.PathLike | None = None, device: str | torch.device = "cpu",
                  allow_untrained: bool = False) -> tuple[CQAFace, str, bool]:
    """The model a command or the workbench should use, and how to name it.

    Order: ``checkpoint`` (``Settings.checkpoint``: the flag, else env ``CQA_CHECKPOINT``), else the
    bundled default model, else (only with ``allow_untrained``) an untrained light model, seed 0.

    Returns:
        (model in eval mode, label, untrained flag).
    """
    if checkpoint:
        return load_model(checkpoint, device), f"weights {Path(checkpoint).name}", False
    if DEFAULT_WEIGHTS.exists():
        return load_default(device), "default model", False
    if not allow_untrained:
        raise FileNotFoundError("no model: pass --checkpoint PATH or set CQA_CHECKPOINT (no default weights installed)")
    torch.manual_seed(0)
    return create_model(ModelConfig(stem="light", branches=4)).to(device).eval(), "untrained light model (seed 0)", True
