"""Face alignment as the paper does it: MTCNN 5 landmarks -> similarity warp -> 112 x 112.

The warp is the weighted least-squares similarity (Umeyama 1991: rotation, uniform scale,
translation) taking the 5 detected points onto :data:`~cqa_core.data.template.ARCFACE_TEMPLATE`,
with the eyes weighted 4x (:data:`LANDMARK_WEIGHTS`). The plain 5-point fit (every point weight 1,
alignment version 1) lets the nose and mouth pull the eyes on turned faces: over all 13,233 LFW
photos it put both eyes within 3 px of the template on 83.6 % of faces; weighting the eyes 4x
gives 97.9 % (2x: 94.3 %) at the cost of a looser nose / mouth fit (median worst of the three
4.63 -> 5.14 px). :data:`ALIGN_VERSION` names the crops' cache folder, so a change here never
mixes with crops made by an earlier version. Every
:class:`AlignedFace` keeps its 2 x 3 affine (photo (x, y) -> aligned (x, y)) so explanation maps
computed at 112 x 112 can be warped back onto the photo with :func:`invert_affine`.

When no face is found, ``fallback="center"`` uses a fixed affine: the template fitted to the
median MTCNN landmarks of LFW deep-funneled photos (:data:`CENTER_LANDMARKS`, fractions of the
image width / height). It suits LFW-style framing (face centred, about 40 % of a square photo;
CelebA-299 crops are framed the same way) and is a rough crop for anything else.
``fallback=None`` raises :class:`NoFaceError` instead.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from cqa_core.data.imageio import (  # noqa: F401  (re-exported public API)
    MAX_PIXELS,
    CorruptImageError,
    ImageError,
    ImageTooLargeError,
    NotAnImageError,
    decode_image,
    load_image,
)
from cqa_core.data.template import ARCFACE_TEMPLATE, SIZE
from cqa_core.settings import AlignMode

ALIGN_VERSION = 2
LANDMARK_WEIGHTS = np.array([4.0, 4.0, 1.0, 1.0, 1.0])  # (5,) left eye, right eye, nose, mouth corners

CENTER_LANDMARKS = np.array(
    [[0.4197, 0.4538], [0.5872, 0.4500], [0.5044, 0.5487], [0.4348, 0.6367], [0.5787, 0.6325]],
    dtype=np.float64,
)  # (5, 2) median MTCNN points on 150 random LFW deep-funneled photos, / (w, h)


NO_FACE = "no face found: the numbers describe the centre of the photo, not a face"
"""What the dashboard's header and message area and ``cqa explain`` say when MTCNN found no face."""


class NoFaceError(ImageError):
    """The detector found no face and no fallback was allowed."""


def no_face_note(name: str, method: str, mode: AlignMode | str = AlignMode.MTCNN) -> str | None:
    """``"NAME: no face found: ..."`` when a photo meant for MTCNN fell back to the centre crop
    (``AlignedFace.method`` / ``FaceAnalysis.align_method`` ``"center"``); None for a found face, an
    aligned crop, or a photo whose centre crop was asked for (``mode`` CENTER: LFW-framed folders)."""
    if method != "center" or AlignMode.parse(mode) is AlignMode.CENTER:
        return None
    return f"{name}: {NO_FACE}"


@dataclass
class AlignedFace:
    """One face warped onto the ArcFace template.

    Attributes:
        image: (112, 112, 3) uint8 RGB aligned crop.
        affine: (2, 3) float matrix mapping photo (x, y, 1) -> aligned (x, y).
        landmarks: (5, 2) detected points in photo coordinates, or None (fallback / identity).
        source_size: (w, h) of the photo.
        method: "mtcnn", "center" (fallback) or "identity" (input already 112 x 112).
        score: detector probability of the chosen face (0.0 for the fallback, 1.0 for identity).
    """

    image: np.ndarray
    affine: np.ndarray
    landmarks: np.ndarray | None
    source_size: tuple[int, int]
    method: str
    score: float

    @property
    def inverse_affine(self) -> np.ndarray:
        """(2, 3) matrix mapping aligned (x, y) back onto the photo."""
        return invert_affine(self.affine)


def umeyama(src: np.ndarray, dst: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
    """(Weighted) least-squares similarity transform taking ``src`` points onto ``dst`` points.

    Args:
        src: (N, 2) points.
        dst: (N, 2) points, N >= 2.
        weights: (N,) non-negative weights w_i; None weighs every point 1.

    Returns:
        (2, 3) float64 affine ``[s R | t]`` minimising sum w_i ||s R src_i + t - dst_i||^2.
    """
    src = np.asarray(src, dtype=np.float64)  # (N, 2)
    dst = np.asarray(dst, dtype=np.float64)  # (N, 2)
    w = np.ones(len(src)) if weights is None else np.asarray(weights, dtype=np.float64)  # (N,)
    w = w / w.sum()
    mu_s, mu_d = w @ src, w @ dst  # (2,), (2,)
    sc, dc = src - mu_s, dst - mu_d  # (N, 2)
    cov = (dc * w[:, None]).T @ sc  # (2, 2)
    u, sig, vt = np.linalg.svd(cov)
    d = np.ones(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        d[-1] = -1.0  # no reflections
    rot = u @ np.diag(d) @ vt  # (2, 2)
    var_s = (w * (sc**2).sum(1)).sum()
    scale = (sig * d).sum() / var_s if var_s > 0 else 1.0
    t = mu_d - scale * rot @ mu_s  # (2,)
    return np.hstack([scale * rot, t[:, None]])  # (2, 3)


def invert_affine(m: np.ndarray) -> np.ndarray:
    """Inverse of a (2, 3) affine matrix, as (2, 3)."""
    full = np.vstack([np.asarray(m, dtype=np.float64), [0.0, 0.0, 1.0]])  # (3, 3)
    return np.linalg.inv(full)[:2]  # (2, 3)


def transform_points(m: np.ndarray, pts: np.ndarray) -> np.ndarray:
    """Apply a (2, 3) affine to (N, 2) points."""
    pts = np.asarray(pts, dtype=np.float64)  # (N, 2)
    return pts @ m[:, :2].T + m[:, 2]  # (N, 2)


def warp(img: np.ndarray, affine: np.ndarray, size: int = SIZE) -> np.ndarray:
    """Warp an HxWx3 image with a (2, 3) affine into a size x size crop (black outside)."""
    import cv2  # optional: OpenCV, the data extra

    return cv2.warpAffine(
        img, np.asarray(affine, dtype=np.float64), (size, size), flags=cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_CONSTANT, borderValue=(0, 0, 0),
    )  # (size, size, 3)


def fit_template(points: np.ndarray) -> np.ndarray:
    """The (2, 3) photo -> aligned affine for 5 landmarks (eye-weighted fit onto the template)."""
    return umeyama(points, ARCFACE_TEMPLATE, LANDMARK_WEIGHTS)


def center_affine(width: int, height: int) -> np.ndarray:
    """The fixed fallback affine for a width x height LFW-style photo (see module docstring)."""
    return fit_template(CENTER_LANDMARKS * np.array([width, height], dtype=np.float64))


class CenterDetector:
    """A 'detector' that never finds a face, so ``align_image`` uses its fixed LFW centre affine.

    For folders of LFW deep-funneled photos, which are all framed alike: ~1 ms per photo
    instead of MTCNN's ~0.5 s on a CPU. Not for other photos, whose faces sit elsewhere.
    """

    cache_key = "center"

    def detect(self, img: np.ndarray, landmarks: bool = True):
        return None, None, None


def detector_for(mode: AlignMode | str) -> Any:
    """The detector ``align_image`` is given for an alignment mode: None (the shared MTCNN) or a
    :class:`CenterDetector`. The one place a mode becomes a detector."""
    return CenterDetector() if AlignMode.parse(mode) is AlignMode.CENTER else None


_DETECTOR: Any = None


def get_detector(device: str = "cpu") -> Any:
    """A process-wide facenet-pytorch MTCNN (keep_all=True), built on first use."""
    global _DETECTOR
    if _DETECTOR is None:
        try:
            from facenet_pytorch import (
                MTCNN,  # optional: facenet-pytorch (installed with --no-deps)
            )
        except ImportError as exc:  # pragma: no cover - depends on the install
            raise RuntimeError(
                "face detection needs facenet-pytorch: pip install --no-deps facenet-pytorch==2.5.3"
            ) from exc
        _DETECTOR = MTCNN(keep_all=True, device=device)
    return _DETECTOR


def detect_faces(img: np.ndarray, detector: Any = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Run MTCNN on an RGB uint8 image.

    Returns:
        boxes (F, 4) x1 y1 x2 y2, probs (F,), landmarks (F, 5, 2); F may be 0.
    """
    det = detector if detector is not None else get_detector()
    boxes, probs, points = det.detect(img, landmarks=True)
    if boxes is None or len(boxes) == 0:
        return np.zeros((0, 4)), np.zeros((0,)), np.zeros((0, 5, 2))
    boxes = np.asarray(np.stack(list(boxes)), dtype=np.float64)  # (F, 4)
    probs = np.asarray(list(probs), dtype=np.float64)  # (F,)
    points = np.asarray(np.stack(list(points)), dtype=np.float64)  # (F, 5, 2)
    return boxes, probs, points


def align_image(
    img: np.ndarray, detector: Any = None, fallback: str | None = "center", pick: str = "largest"
) -> AlignedFace:
    """Detect the face in a photo and warp it onto the 112 x 112 ArcFace template.

    Args:
        img: (H, W, 3) uint8 RGB photo. A 112 x 112 input is taken as already aligned.
        detector: an object with ``detect(img, landmarks=True)`` like facenet-pytorch's MTCNN;
            None uses the shared CPU MTCNN.
        fallback: "center" to use :func:`center_affine` when no face is found; None to raise.
        pick: "largest" (box area, the default) or "best" (highest probability).

    Returns:
        The :class:`AlignedFace`.

    Raises:
        NoFaceError: no face and ``fallback`` is None.
        ValueError: ``img`` is not HxWx3 uint8.
    """
    if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
        raise ValueError(f"expected an HxWx3 uint8 RGB image, got shape {img.shape} dtype {img.dtype}")
    h, w = img.shape[:2]
    if (h, w) == (SIZE, SIZE):
        eye = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])  # (2, 3)
        return AlignedFace(img.copy(), eye, None, (w, h), "identity", 1.0)
    boxes, probs, points = detect_faces(img, detector)
    if len(boxes):
        if pick == "best":
            i = int(np.argmax(probs))
        else:
            i = int(np.argmax((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])))
        m = fit_template(points[i])  # (2, 3)
        return AlignedFace(warp(img, m), m, points[i].astype(np.float32), (w, h), "mtcnn", float(probs[i]))
    if fallback == "center":
        m = center_affine(w, h)
        return AlignedFace(warp(img, m), m, None, (w, h), "center", 0.0)
    if fallback is None:
        raise NoFaceError(f"no face found in a {w}x{h} image")
    raise ValueError(f"unknown fallback {fallback!r}; use 'center' or None")
