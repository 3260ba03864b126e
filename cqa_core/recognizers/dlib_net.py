"""dlib's ResNet itself: the module, its model files, and descriptors of its 150 x 150 chips.

The part of the dlib recognizer a worker process needs (``dlib_workers``): it imports neither the
recognizer interface's adapter (``dlib_resnet``) nor the workers, so neither imports the other.
"""

from __future__ import annotations

import functools
import importlib.util
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from cqa_core.recognizers.base import RecognizerError

CHIP_SIZE = 150
INSTALL_HINT = "pip install 'cqa-face[distill]'"


def import_dlib() -> ModuleType:
    """The ``dlib`` module, or a RecognizerError naming the extra to install."""
    try:
        import dlib  # optional: the distill extra (dlib-bin)
    except ImportError as exc:
        raise RecognizerError(f"the dlib recognizer needs dlib: {INSTALL_HINT}") from exc
    return dlib


def model_dir() -> Path:
    """The ``models`` folder of ``face_recognition_models`` (located, never imported)."""
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise RecognizerError(f"dlib's model files come with face_recognition_models: {INSTALL_HINT}")
    folder = Path(next(iter(spec.submodule_search_locations))) / "models"
    if not (folder / "dlib_face_recognition_resnet_model_v1.dat").is_file():
        raise RecognizerError(f"no dlib_face_recognition_resnet_model_v1.dat in {folder}: {INSTALL_HINT}")
    return folder


@functools.lru_cache(maxsize=1)
def net() -> Any:
    """dlib's ``face_recognition_model_v1``, loaded once per process."""
    dlib = import_dlib()
    return dlib.face_recognition_model_v1(str(model_dir() / "dlib_face_recognition_resnet_model_v1.dat"))


def embed_chips(chips: np.ndarray) -> np.ndarray:
    """dlib descriptors (N, 128) float32 of its 150 x 150 uint8 RGB chips (N, 150, 150, 3).

    One call of dlib's batch form ``compute_face_descriptor(list_of_chips, num_jitters=0)``, in
    this process.
    """
    chips = np.asarray(chips)
    if chips.ndim != 4 or chips.shape[1:] != (CHIP_SIZE, CHIP_SIZE, 3):
        raise RecognizerError(f"dlib takes ({CHIP_SIZE}, {CHIP_SIZE}, 3) chips, got {chips.shape}")
    if len(chips) == 0:
        return np.zeros((0, 128), np.float32)
    batch = [np.ascontiguousarray(c, dtype=np.uint8) for c in chips]  # N x (150, 150, 3) uint8
    return np.asarray(net().compute_face_descriptor(batch, 0), np.float32)  # (N, 128)
