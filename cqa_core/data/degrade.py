"""Deterministic degradations of aligned 112 x 112 faces: synthetic masks, blur, low resolution,
noise, occlusion, JPEG. Every function takes and returns (H, W, 3) uint8 RGB and is a pure
function of its arguments (randomness only through an explicit ``seed``).

Masks (MLFW-style): a MaskTheFace RGBA template is warped by the homography that takes its six
anchors ``mask_a .. mask_f`` (``masks.cfg``) onto six face points estimated from the five ArcFace
landmarks (:func:`face_anchor_points`), then alpha-blended. The templates live in
``<data root>/masks`` (``Settings.data_root``, passed down as ``mask_root``; its default otherwise).
"""

from __future__ import annotations

import configparser
import functools
import io
import os
from pathlib import Path

import numpy as np
from PIL import Image

from cqa_core.data import data_place
from cqa_core.data.template import ARCFACE_TEMPLATE

MASK_KINDS = ("surgical", "surgical_blue", "surgical_green", "N95", "KN95", "cloth", "gas")
"""Frontal MaskTheFace templates (the ``_left`` / ``_right`` views are accepted by name too)."""

DEGRADE_KINDS = ("mask", "blur", "downscale", "noise", "occlude", "jpeg")
SEVERITY = {  # severity 1..5 -> parameter
    "blur": (0.8, 1.5, 2.5, 3.5, 5.0),  # Gaussian sigma, px
    "downscale": (1.5, 2.0, 3.0, 4.0, 6.0),  # size divided by
    "noise": (5.0, 10.0, 20.0, 30.0, 45.0),  # Gaussian std, grey levels
    "occlude": (0.15, 0.25, 0.35, 0.45, 0.55),  # square side / image side
    "jpeg": (70, 50, 30, 20, 10),  # JPEG quality
}


def face_anchor_points(landmarks: np.ndarray = ARCFACE_TEMPLATE) -> np.ndarray:
    """Estimate MaskTheFace's six face points from five landmarks (eyes, nose, mouth corners).

    Built in the face's own frame (x along the eye line, unit = inter-eye distance d, y down):
    b = halfway from the eye midpoint to the nose tip (middle of the nose bridge); a, c = one
    nose-length below the eyes, 1.1 d either side of the face axis (cheek contour); d, f = the
    bottom of the lower lip (mouth line + 0.17 d), 0.95 d either side; e = the chin, 0.55 d below
    the mouth line. The ratios are average face proportions (checked by eye on LFW crops).

    Returns:
        (6, 2) points a, b, c, d, e, f in the landmarks' coordinates.
    """
    lm = np.asarray(landmarks, dtype=np.float64)  # (5, 2)
    eye_l, eye_r, nose = lm[0], lm[1], lm[2]
    eyes = (eye_l + eye_r) / 2
    mouth = (lm[3] + lm[4]) / 2
    ex = eye_r - eye_l
    d = np.linalg.norm(ex)
    ux = ex / d  # (2,) along the eyes
    uy = np.array([-ux[1], ux[0]])  # (2,) down the face
    axis_x = float((nose - eyes) @ ux) * 0.5  # face axis shifts a little towards the nose
    nose_len = float((nose - eyes) @ uy)
    mouth_y = float((mouth - eyes) @ uy)

    def at(x: float, y: float) -> np.ndarray:
        return eyes + (axis_x + x) * ux + y * uy

    return np.stack([
        at(-1.1 * d, nose_len), at(0.0, 0.5 * nose_len), at(1.1 * d, nose_len),
        at(-0.95 * d, mouth_y + 0.17 * d), at(0.0, mouth_y + 0.55 * d), at(0.95 * d, mouth_y + 0.17 * d),
    ])  # (6, 2)


def _mask_root(mask_root: str | os.PathLike | None) -> Path:
    return Path(mask_root) if mask_root is not None else data_place(None) / "masks"


@functools.lru_cache(maxsize=32)
def _load_template(root: str, kind: str) -> tuple[np.ndarray, np.ndarray]:
    cfg = configparser.ConfigParser()
    cfg_path = Path(root) / "masks.cfg"
    if not cfg.read(cfg_path):
        raise FileNotFoundError(f"mask config not found: {cfg_path} (set CQA_DATA or mask_root)")
    if kind not in cfg or "mask_a" not in cfg[kind]:
        raise ValueError(f"unknown mask kind {kind!r}; choose one of {MASK_KINDS}")
    sec = cfg[kind]
    pts = np.array([[float(v) for v in sec[f"mask_{c}"].split(",")] for c in "abcdef"])  # (6, 2)
    rgba = np.asarray(Image.open(Path(root) / sec["template"].strip()).convert("RGBA"))  # (h, w, 4)
    return rgba, pts


def apply_mask(image112: np.ndarray, kind: str = "surgical", seed: int = 0,
               mask_root: str | os.PathLike | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Draw a synthetic face mask on an aligned 112 x 112 face.

    Args:
        image112: (112, 112, 3) uint8 RGB aligned face.
        kind: a :data:`MASK_KINDS` name (or any template in masks.cfg), or "random" (picked by seed).
        seed: jitters the six anchors by ~1 px (so masks vary) deterministically.
        mask_root: folder with masks.cfg and templates/ (``Settings.data_root / "masks"``; None: its default).

    Returns:
        (masked (112, 112, 3) uint8 RGB, coverage alpha (112, 112) float32 in [0, 1]).
    """
    import cv2  # optional: OpenCV, the data extra

    img = _check(image112)
    rng = np.random.default_rng(seed)
    if kind == "random":
        kind = MASK_KINDS[int(rng.integers(len(MASK_KINDS)))]
    rgba, src = _load_template(str(_mask_root(mask_root)), kind)
    dst = face_anchor_points() + rng.normal(0.0, 0.7, (6, 2)) * (seed != 0)  # (6, 2)
    h, _ = cv2.findHomography(src.astype(np.float32), dst.astype(np.float32), 0)
    warped = cv2.warpPerspective(rgba, h, (img.shape[1], img.shape[0]), flags=cv2.INTER_LINEAR,
                                 borderMode=cv2.BORDER_CONSTANT, borderValue=(0, 0, 0, 0))  # (112, 112, 4)
    alpha = warped[:, :, 3].astype(np.float32) / 255.0  # (112, 112)
    out = img.astype(np.float32) * (1 - alpha[:, :, None]) + warped[:, :, :3].astype(np.float32) * alpha[:, :, None]
    return np.clip(out + 0.5, 0, 255).astype(np.uint8), alpha


def masked_side(images: np.ndarray, index: np.ndarray, kind: str = "random", offset: int = 0,
                alpha: bool = False, mask_root: str | os.PathLike | None = None) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """Masked copies of ``images[index]``, the k-th with ``apply_mask(seed=k + offset + 1, mask_root=mask_root)``.

    This is the masked side of the M2N / M2M protocols (``cqa eval --protocol masked-*``).
    Returns (K, 112, 112, 3) uint8, plus the (K, 112, 112) float32 alphas when ``alpha``.
    """
    out = np.empty((len(index), *images.shape[1:]), np.uint8)  # (K, 112, 112, 3)
    alphas = np.empty((len(index), *images.shape[1:3]), np.float32)  # (K, 112, 112)
    for k, i in enumerate(index):
        out[k], alphas[k] = apply_mask(images[i], kind, seed=k + offset + 1, mask_root=mask_root)
    return (out, alphas) if alpha else out


def _check(img: np.ndarray) -> np.ndarray:
    if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
        raise ValueError(f"expected an HxWx3 uint8 RGB image, got shape {img.shape} dtype {img.dtype}")
    return img


def blur(img: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blur with standard deviation ``sigma`` px (kernel 6 sigma + 1)."""
    import cv2  # optional: OpenCV, the data extra

    k = int(2 * round(3 * sigma) + 1)
    return cv2.GaussianBlur(_check(img), (k, k), sigmaX=sigma, borderType=cv2.BORDER_REFLECT101)


def downscale(img: np.ndarray, factor: float) -> np.ndarray:
    """Low resolution: shrink by ``factor`` (area) and enlarge back (bilinear) to the same size."""
    import cv2  # optional: OpenCV, the data extra

    h, w = _check(img).shape[:2]
    small = cv2.resize(img, (max(1, round(w / factor)), max(1, round(h / factor))), interpolation=cv2.INTER_AREA)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)


def noise(img: np.ndarray, std: float, seed: int = 0) -> np.ndarray:
    """Add Gaussian noise of ``std`` grey levels (clipped)."""
    n = np.random.default_rng(seed).normal(0.0, std, _check(img).shape)
    return np.clip(img.astype(np.float64) + n + 0.5, 0, 255).astype(np.uint8)


def occlude(img: np.ndarray, box: tuple[int, int, int, int] | None = None, seed: int = 0,
            size: float = 0.3, value: int = 0) -> np.ndarray:
    """Paint a rectangle ``box`` = (x0, y0, x1, y1) (exclusive ends) with ``value``; with no box,
    a square of side ``size`` x width at a position drawn from ``seed``."""
    out = _check(img).copy()
    h, w = out.shape[:2]
    if box is None:
        s = max(1, round(size * min(h, w)))
        rng = np.random.default_rng(seed)
        x0, y0 = int(rng.integers(0, w - s + 1)), int(rng.integers(0, h - s + 1))
        box = (x0, y0, x0 + s, y0 + s)
    x0, y0, x1, y1 = box
    out[max(0, y0):y1, max(0, x0):x1] = value
    return out


def jpeg(img: np.ndarray, quality: int) -> np.ndarray:
    """Re-encode as JPEG at ``quality`` (1..100) and decode."""
    buf = io.BytesIO()
    Image.fromarray(_check(img)).save(buf, format="JPEG", quality=int(quality))
    return np.asarray(Image.open(buf).convert("RGB")).copy()


def degrade(img: np.ndarray, kind: str, severity: int = 3, seed: int = 0,
            mask_root: str | os.PathLike | None = None) -> np.ndarray:
    """One degradation at severity 1 (mild) .. 5 (strong); see :data:`SEVERITY`.

    ``kind`` is one of :data:`DEGRADE_KINDS`; "mask" draws a seed-chosen :data:`MASK_KINDS` mask
    (severity ignored) from ``mask_root`` (as :func:`apply_mask`); "random" picks the kind from the seed.
    """
    if not 1 <= int(severity) <= 5:
        raise ValueError(f"severity must be 1..5, got {severity}")
    if kind == "random":
        kind = DEGRADE_KINDS[int(np.random.default_rng(seed).integers(len(DEGRADE_KINDS)))]
    if kind == "mask":
        return apply_mask(img, "random", seed=seed, mask_root=mask_root)[0]
    if kind not in SEVERITY:
        raise ValueError(f"unknown degradation {kind!r}; choose one of {DEGRADE_KINDS} or 'random'")
    p = SEVERITY[kind][int(severity) - 1]
    if kind == "blur":
        return blur(img, p)
    if kind == "downscale":
        return downscale(img, p)
    if kind == "noise":
        return noise(img, p, seed)
    if kind == "occlude":
        return occlude(img, seed=seed, size=p)
    return jpeg(img, int(p))
