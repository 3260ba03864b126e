"""dlib's ResNet face descriptor (128-d) as a black-box :class:`~cqa_core.recognizers.base.Recognizer`.

    rec = load_dlib()                                  # kind "dlib", name "dlib ResNet"
    chip, affine = cut_chip(photo, align_image(photo), rec.preprocess)   # (150, 150, 3) uint8
    emb = rec.embed(chip[None])                        # (1, 128) float32

dlib (the ``distill`` extra: ``dlib-bin`` + ``face_recognition_models``) reads its model files
from the ``face_recognition_models`` package folder directly: that package's ``__init__`` imports
the retired ``pkg_resources``, so it is located with ``importlib`` and never imported.

Its chip. dlib aligns a face with its 5-point shape predictor (eye corners, bottom of the nose)
and ``get_face_chip(img, shape, size=150, padding=0.25)``. Here the chip is instead cut from the
workbench's own MTCNN landmarks (eye centres, nose tip, mouth corners), like every other
recognizer's, with the eye-weighted similarity fit onto :data:`cqa_core.data.template.DLIB_TEMPLATE`: where MTCNN's five
points fall, on average, inside dlib's own chip. So one MTCNN alignment per photo serves every
recognizer, and a map on the chip goes back onto the photo through the chip's own affine.
:func:`dlib_chip` keeps dlib's own pipeline, to check the template against.

dlib normalises the chip inside the network (its input layer subtracts its own mean), so the chip
is raw 0-255 RGB: the recorded preprocessing is mean (0, 0, 0), std (1, 1, 1).
"""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Any

import numpy as np

from cqa_core.checkpoint import file_digest
from cqa_core.data.align import umeyama
from cqa_core.recognizers.base import Preprocess, Recognizer, RecognizerError
from cqa_core.recognizers.dlib_net import CHIP_SIZE, embed_chips, import_dlib, model_dir, net
from cqa_core.recognizers.dlib_workers import Workers
from cqa_core.recognizers.registry import DLIB, LoadOptions, register_recognizer

CHIP_PADDING = 0.25  # dlib's default for its face recognition chips

PREPROCESS = Preprocess(size=CHIP_SIZE, template=DLIB, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0), bgr=False)
"""Raw RGB pixels: dlib normalises inside the network (mean / std recorded as 0 / 1)."""


@functools.lru_cache(maxsize=1)
def _shape_predictor() -> Any:
    """dlib's 5-point shape predictor, loaded once per process."""
    dlib = import_dlib()
    return dlib.shape_predictor(str(model_dir() / "shape_predictor_5_face_landmarks.dat"))


@functools.lru_cache(maxsize=1)
def _hog_detector() -> Any:
    return import_dlib().get_frontal_face_detector()


MIN_SPLIT = 8  # chips per worker below which a batch stays in this process


@functools.lru_cache(maxsize=4)
def _workers(n: int) -> Workers:
    return Workers(n)


def parallel_embedder(workers: int):
    """``embed_chips`` split over ``workers`` processes (``dlib_workers``): dlib holds the GIL and
    uses one core per call, so a batch on 2 processes takes half the time, with the same numbers.
    Small batches (under ``MIN_SPLIT`` chips a worker) stay in this process."""

    def embed(chips: np.ndarray) -> np.ndarray:
        chips = np.asarray(chips)
        if min(workers, len(chips) // MIN_SPLIT) < 2:
            return embed_chips(chips)
        return _workers(workers).embed(chips)  # (N, 128)

    return embed


def default_workers() -> int:
    """The CPU cores this process may use, at most 4."""
    return max(1, min(4, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1))


def load_dlib(batch_size: int = 32, workers: int | None = None) -> Recognizer:
    """dlib's ResNet as a black-box Recognizer on its 150 x 150 chips (template ``"dlib"``).

    Args:
        batch_size: chips per ``embed`` call (bounds memory and progress granularity).
        workers: processes a batch is split over (default: the usable cores, at most 4; 1 = this
            process only). The processes start on the first large batch.

    Raises:
        RecognizerError: dlib or face_recognition_models is not installed.
    """
    import_dlib()
    path = model_dir() / "dlib_face_recognition_resnet_model_v1.dat"
    net()
    workers = default_workers() if workers is None else workers
    embed = parallel_embedder(workers) if workers > 1 else embed_chips
    return Recognizer(name="dlib ResNet", kind="dlib", preprocess=PREPROCESS, embed_fn=embed,
                      source=str(path), digest=f"dlib-{file_digest(path)}", batch_size=batch_size)


def load_dlib_spec(target: str | Path, options: LoadOptions) -> Recognizer:
    """The registry's loader of the ``"dlib"`` spec (CPU only: options are not used)."""
    return load_dlib()


def register() -> None:
    register_recognizer(load_dlib_spec, names=(DLIB,), about=f"{DLIB} (dlib's ResNet, black-box)")


# -- dlib's own pipeline (for checking the template, and for the distillation teacher's chips) -------
def landmark_box(landmarks: np.ndarray) -> tuple[int, int, int, int]:
    """A square (left, top, right, bottom) box around 5 MTCNN landmarks, for dlib's shape predictor.

    The same box as ``training.distill.DlibTeacher``: centred on the landmarks' mean, 2.2 x the
    larger of the eye distance and the eye-to-mouth distance.
    """
    lm = np.asarray(landmarks, np.float64)  # (5, 2)
    centre = lm.mean(axis=0)  # (2,)
    side = 2.2 * max(np.linalg.norm(lm[1] - lm[0]), np.linalg.norm((lm[3] + lm[4]) / 2 - (lm[0] + lm[1]) / 2))
    return (int(centre[0] - side / 2), int(centre[1] - side / 2), int(centre[0] + side / 2), int(centre[1] + side / 2))


def chip_affine(details: Any) -> np.ndarray:
    """The (2, 3) photo -> chip affine of a dlib ``chip_details`` (rect rotated by ``angle``).

    dlib cuts the chip from ``rect`` rotated counter-clockwise by ``angle`` about its centre, its
    corners going to the chip's corners (0, 0), (cols - 1, 0), (cols - 1, rows - 1), (0, rows - 1).
    """
    r = details.rect
    corners = np.array([[r.left(), r.top()], [r.right(), r.top()], [r.right(), r.bottom()],
                        [r.left(), r.bottom()]], np.float64)  # (4, 2)
    centre = corners.mean(axis=0)  # (2,)
    c, s = np.cos(details.angle), np.sin(details.angle)
    rotated = (corners - centre) @ np.array([[c, s], [-s, c]]) + centre  # (4, 2) rotated by +angle
    w, h = details.cols - 1, details.rows - 1
    return umeyama(rotated, np.array([[0, 0], [w, 0], [w, h], [0, h]], np.float64))  # (2, 3)


def dlib_shape(photo: np.ndarray, landmarks: np.ndarray | None = None, detect: bool = True) -> tuple[Any, str]:
    """dlib's 5-point shape of the face in ``photo`` and where its box came from.

    Args:
        photo: (H, W, 3) uint8 RGB.
        landmarks: (5, 2) MTCNN points of the face (picks the HOG box holding them; the fallback box).
        detect: run dlib's HOG frontal face detector first; False uses :func:`landmark_box` only.

    Returns:
        (``full_object_detection``, "hog" | "landmarks").
    """
    dlib = import_dlib()
    box = None
    if detect:
        rects = list(_hog_detector()(photo, 1))
        if landmarks is not None:
            cx, cy = np.asarray(landmarks, np.float64).mean(axis=0)  # landmark centre
            rects = [r for r in rects if r.left() <= cx <= r.right() and r.top() <= cy <= r.bottom()]
        if rects:
            box = max(rects, key=lambda r: r.area())
    if box is not None:
        return _shape_predictor()(photo, box), "hog"
    if landmarks is None:
        raise RecognizerError("dlib found no face and no landmarks were given for a box")
    return _shape_predictor()(photo, dlib.rectangle(*landmark_box(landmarks))), "landmarks"


def dlib_chip(photo: np.ndarray, landmarks: np.ndarray | None = None,
              detect: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """dlib's own chip of a photo: (chip (150, 150, 3) uint8, affine photo -> chip (2, 3)).

    Shape predictor in dlib's HOG box (or a box around ``landmarks``), then
    ``get_face_chip(size=150, padding=0.25)``: what dlib's examples feed the ResNet.
    """
    dlib = import_dlib()
    shape, _ = dlib_shape(photo, landmarks, detect)
    chip = dlib.get_face_chip(photo, shape, size=CHIP_SIZE, padding=CHIP_PADDING)  # (150, 150, 3)
    details = dlib.get_face_chip_details(shape, size=CHIP_SIZE, padding=CHIP_PADDING)
    return np.asarray(chip, np.uint8), chip_affine(details)
