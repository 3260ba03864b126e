"""A recognizer's chips of faces already aligned (what evaluation reads).

Evaluation sets hold 112 x 112 ArcFace crops and, when their photos are known, each photo's
alignment row (MTCNN landmarks, affine; ``data.verification.PairSet.sources``). A recognizer whose
chip is that crop reads the crops; any other (dlib's 150 x 150 chip) cuts its own chip from the
photo with the stored landmarks, exactly as the dashboard does from a fresh detection
(``base.cut_chip``). Without photos (a ``.bin`` set, pre-aligned faces, synthetic masks drawn on
the crops) the chip is cut from the crop itself: black outside it, which is logged.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
from tqdm import tqdm

from cqa_core.data.align import AlignedFace, load_image
from cqa_core.data.align_run import refit
from cqa_core.recognizers.base import Recognizer, cut_chip

log = logging.getLogger(__name__)


def chip_of_crop(rec: Recognizer, crop: np.ndarray) -> np.ndarray:
    """A recognizer's chip cut from a 112 x 112 ArcFace crop (no photo around it)."""
    face = AlignedFace(crop, np.eye(2, 3), None, crop.shape[1::-1], "identity", 1.0)
    return cut_chip(crop, face, rec.preprocess)[0]  # (S, S, 3)


def recognizer_chips(rec: Recognizer, crops: np.ndarray, sources: list[tuple[Path, dict[str, str]]] | None = None,
                     progress: bool = True) -> np.ndarray:
    """Chips (N, S, S, 3) for ``rec`` of N aligned faces: ``crops`` (N, 112, 112, 3) and, when known, each
    face's (photo, alignment row) (``PairSet.sources``)."""
    if rec.preprocess.is_arcface112:
        return crops
    if sources is None:
        log.warning("%s: the faces are 112 x 112 crops without their photos; its %d x %d chips are cut from "
                    "the crops (black outside them)", rec.name, rec.preprocess.size, rec.preprocess.size)
        return np.stack([chip_of_crop(rec, c) for c in crops])
    out = np.empty((len(crops), rec.preprocess.size, rec.preprocess.size, 3), np.uint8)
    for i, (path, row) in enumerate(tqdm(sources, desc=f"{rec.name} chips", unit="img", disable=not progress,
                                         leave=False)):
        photo = load_image(path)
        out[i] = cut_chip(photo, refit(photo, row), rec.preprocess)[0]
    return out
