"""ONNX export of CQA-Face for serving without PyTorch.

The graph takes ``images`` (B, 3, 112, 112) float32, normalised as :mod:`cqa_core.preprocess`
does (RGB in [-1, 1]), and returns three of the :class:`~cqa_core.model.CQAOutput` fields:

    embedding       (B, 512)      after FC-512 + BN, not L2-normalised
    attention_maps  (B, b, h, w)  branch attention M_i in [0, 1]
    quality         (B, b)        QAN quality scores S_hat_i (ones without QAN)

B is a dynamic axis (``batch``). ``onnx`` and ``onnxruntime`` are imported only when needed (the
``export`` extra; the GPU image has neither). The export uses torch's TorchScript-based exporter
(``dynamo=False``): it needs no extra package, whereas the torch.export-based one also needs
``onnxscript``.
"""

from __future__ import annotations

import importlib
import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from cqa_core.checkpoint import atomic_write

INPUT = "images"
OUTPUTS = ("embedding", "attention_maps", "quality")
OPSET = 17
EXTRA_HINT = "pip install 'cqa-face[export]'  (onnx, onnxruntime)"


class ExportWrapper(nn.Module):
    """CQA-Face with a plain tuple output (ONNX graphs return tensors, not named tuples)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        out = self.model(images)  # CQAOutput
        return out.embedding, out.attention_maps, out.quality  # (B, 512), (B, b, h, w), (B, b)


def _require(module: str) -> Any:
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise RuntimeError(f"{module} is not installed: {EXTRA_HINT}") from exc


def export_onnx(model: nn.Module, path: str | os.PathLike, opset: int = OPSET, check: bool = True) -> Path:
    """Write ``model`` (CQA-Face) as an ONNX graph with a dynamic batch axis, atomically.

    Args:
        model: a CQAFace; exported in eval mode on the CPU (its own mode and device are restored).
        path: output ``.onnx`` file.
        opset: ONNX opset version.
        check: run ``onnx.checker`` on the written file (needs ``onnx``).

    Returns:
        The path written.
    """
    was_training = model.training
    device = next(model.parameters()).device
    wrapper = ExportWrapper(model.cpu().eval())
    example = torch.zeros(2, 3, 112, 112)  # (2, 3, 112, 112); any batch size works afterwards
    dynamic = {name: {0: "batch"} for name in (INPUT, *OUTPUTS)}

    def write(tmp: str) -> None:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*legacy TorchScript-based ONNX export.*")
            warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"torch\.onnx")
            torch.onnx.export(wrapper, (example,), tmp, input_names=[INPUT], output_names=list(OUTPUTS),
                              dynamic_axes=dynamic, opset_version=opset, dynamo=False)

    try:
        out = atomic_write(path, write)
    finally:
        model.to(device).train(was_training)
    if check:
        onnx = _require("onnx")
        onnx.checker.check_model(str(out))
    return out


def onnx_session(path: str | os.PathLike, threads: int | None = None) -> Any:
    """An onnxruntime CPU ``InferenceSession`` for an exported file (``threads`` intra-op threads)."""
    ort = _require("onnxruntime")
    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def run_onnx(session: Any, images: np.ndarray | torch.Tensor) -> dict[str, np.ndarray]:
    """Run an exported graph: normalised (B, 3, 112, 112) input -> {output name: array}."""
    x = images.detach().cpu().numpy() if isinstance(images, torch.Tensor) else np.asarray(images)
    values = session.run(list(OUTPUTS), {INPUT: x.astype(np.float32, copy=False)})
    return dict(zip(OUTPUTS, values, strict=True))


def parity(model: nn.Module, session: Any, images: torch.Tensor) -> dict[str, float]:
    """Max absolute difference per output between PyTorch eager and onnxruntime on ``images``."""
    device = next(model.parameters()).device
    with torch.no_grad():
        ref = ExportWrapper(model.eval())(images.to(device))
    got = run_onnx(session, images)
    return {name: float(np.abs(got[name] - r.cpu().numpy()).max()) for name, r in zip(OUTPUTS, ref, strict=True)}
