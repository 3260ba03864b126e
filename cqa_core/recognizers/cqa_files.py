"""CQA-Face's specs: ``"default"`` (the session's model) and ``.safetensors`` checkpoints (or a run
folder holding ``model.safetensors``), each made a Recognizer by :func:`~cqa_core.recognizers.cqa.from_cqa`.

``"default"`` is ``LoadOptions.checkpoint`` when set, else the bundled model, else an untrained
light model (seed 0) whose note says so (``checkpoint.resolve_model``).
"""

from __future__ import annotations

from pathlib import Path

from cqa_core.checkpoint import MODEL_FILE, load_model, resolve_model
from cqa_core.recognizers.base import Recognizer
from cqa_core.recognizers.cqa import from_cqa
from cqa_core.recognizers.registry import DEFAULT, LoadOptions, register_recognizer

UNTRAINED = "UNTRAINED: maps and scores are not meaningful"
"""The note of an untrained default model (the engine gives it no threshold)."""


def load_cqa(target: str | Path, options: LoadOptions) -> Recognizer:
    """The CQA-Face ``target`` names: :data:`DEFAULT`, or a checkpoint file."""
    if target == DEFAULT:
        model, label, untrained = resolve_model(options.checkpoint, options.device, allow_untrained=True)
        return from_cqa(model, name=label, source=options.checkpoint, note=UNTRAINED if untrained else None)
    path = Path(target)
    return from_cqa(load_model(path, options.device), name=path.name, source=str(path))


def register() -> None:
    register_recognizer(load_cqa, names=(DEFAULT,), suffixes=(".safetensors",), folder_file=MODEL_FILE,
                        about=f"{DEFAULT} | PATH.safetensors (CQA-Face)")
