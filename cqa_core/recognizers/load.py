"""One spec names any recognizer: what ``--model`` and the dashboard's "add a model" take.

    load_recognizer("default")                 # the bundled CQA-Face (or Settings.checkpoint)
    load_recognizer("runs/x/model.safetensors")  # a CQA-Face checkpoint (or a folder holding one)
    load_recognizer("backbone.pth")            # an insightface arcface_torch iResNet, its own head
    load_recognizer("w600k_r50.onnx")          # any ONNX face embedder (white-box when convertible)
    load_recognizer("dlib")                    # dlib's ResNet (black-box)

The spec is looked up in the registry (:mod:`.registry`): first as a name, then as a file by its
suffix. Before the first look-up the built-in adapters register themselves (:data:`BUILTINS`), then
the plug-ins of other packages (entry-point group ``cqa.recognizers``).

A bad file is a one-line ``RecognizerError`` / ``CheckpointError`` (both ``ValueError``): a pickle
refused by ``weights_only=True``, an ONNX op that cannot be converted (it then loads black-box and
says why in its ``note``), a wrong input size.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

from cqa_core.plugins import RECOGNIZERS, load_plugins
from cqa_core.recognizers import arcface, cqa_files, dlib_resnet, onnx_model, registry
from cqa_core.recognizers.base import Recognizer, RecognizerError
from cqa_core.recognizers.registry import DEFAULT, LoadOptions

BUILTINS = (cqa_files.register, arcface.register, onnx_model.register, dlib_resnet.register)
"""The ``register()`` of each built-in adapter, in the order their specs are listed."""


@functools.cache
def registered() -> None:
    """Register the built-in adapters, then the plug-ins (once per process)."""
    for register in BUILTINS:
        register()
    load_plugins(RECOGNIZERS)


def spec_names() -> list[str]:
    """Every spec that is a name rather than a file ("default", "dlib", a plug-in's)."""
    registered()
    return registry.names()


def specs() -> str:
    """What a spec may be, in one line (help texts, errors)."""
    registered()
    return registry.describe()


def load_recognizer(spec: str | os.PathLike | None = None, device: str = "cpu", checkpoint: str | None = None,
                    layer: str | None = None) -> Recognizer:
    """The recognizer a spec names (see the module docstring).

    Args:
        spec: a registered name ("default" / None: the session's CQA-Face, "dlib", a plug-in's), or a
            model file (or a folder holding one) whose suffix is registered.
        device: where a torch model runs.
        checkpoint: the CQA-Face a "default" spec means (``Settings.checkpoint``).
        layer: the Grad-CAM layer of a white-box model (found automatically when None).
    """
    registered()
    text = str(spec or DEFAULT).strip()
    options = LoadOptions(device=device, checkpoint=checkpoint, layer=layer)
    named = registry.by_name(text)
    if named is not None:
        return named.load(text, options)
    path = Path(text).expanduser()
    if path.is_dir():
        path = next((path / f for f in registry.folder_files() if (path / f).is_file()), path)
    if not path.is_file():
        raise RecognizerError(f"model not found: {text} (give {registry.describe()})")
    entry = registry.by_suffix(path.suffix)
    if entry is None:
        raise RecognizerError(f"{path.name}: unknown model file type {path.suffix.lower()!r} (give {registry.describe()})")
    return entry.load(path, options)
