"""One spec names any recognizer: what ``--model`` and the dashboard's "add a model" take.

    load_recognizer("default")                 # the bundled CQA-Face (or Settings.checkpoint)
    load_recognizer("runs/x/model.safetensors")  # a CQA-Face checkpoint (or a folder holding one)
    load_recognizer("backbone.pth")            # an insightface arcface_torch iResNet, its own head
    load_recognizer("w600k_r50.onnx")          # any ONNX face embedder (white-box when convertible)
    load_recognizer("dlib")                    # dlib's ResNet (black-box)

A bad file is a one-line ``RecognizerError`` / ``CheckpointError`` (both ``ValueError``): a pickle
refused by ``weights_only=True``, an ONNX op that cannot be converted (it then loads black-box and
says why in its ``note``), a wrong input size.
"""

from __future__ import annotations

import os
from pathlib import Path

from cqa_core.checkpoint import MODEL_FILE, load_model, resolve_model
from cqa_core.recognizers.arcface import load_arcface
from cqa_core.recognizers.base import Recognizer, RecognizerError
from cqa_core.recognizers.cqa import from_cqa
from cqa_core.recognizers.dlib_resnet import load_dlib
from cqa_core.recognizers.onnx_model import load_onnx

SPECS = "default | PATH.safetensors (CQA-Face) | PATH.pth (insightface iResNet) | PATH.onnx | dlib"


def load_recognizer(spec: str | os.PathLike | None = None, device: str = "cpu", checkpoint: str | None = None,
                    layer: str | None = None) -> Recognizer:
    """The recognizer a spec names (see the module docstring).

    Args:
        spec: "default" / None (the session's CQA-Face: ``checkpoint``, else the bundled model), "dlib",
            or a path ending in .safetensors (or a folder with ``model.safetensors``), .pth / .pt, .onnx.
        device: where a torch model runs.
        checkpoint: the CQA-Face a "default" spec means (``Settings.checkpoint``).
        layer: the Grad-CAM layer of a .pth / .onnx model (found automatically when None).
    """
    text = str(spec or "default").strip()
    if text == "default":
        model, label, untrained = resolve_model(checkpoint, device, allow_untrained=True)
        rec = from_cqa(model, name=label, source=checkpoint)
        if untrained:
            rec.note = "UNTRAINED: maps and scores are not meaningful"
        return rec
    if text == "dlib":
        return load_dlib()
    path = Path(text).expanduser()
    if path.is_dir() and (path / MODEL_FILE).is_file():
        path = path / MODEL_FILE
    if not path.is_file():
        raise RecognizerError(f"model not found: {text} (give {SPECS})")
    suffix = path.suffix.lower()
    if suffix == ".safetensors":
        return from_cqa(load_model(path, device), name=path.name, source=str(path))
    if suffix in (".pth", ".pt"):
        rec = load_arcface(path, layer=layer)
    elif suffix == ".onnx":
        rec = load_onnx(path, layer=layer)
    else:
        raise RecognizerError(f"{path.name}: unknown model file type {suffix!r} (give {SPECS})")
    if rec.module is not None:
        rec.module.to(device)
    return rec
