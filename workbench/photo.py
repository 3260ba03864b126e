"""The size of a photo the workbench analyses: its longer side at most :data:`MAX_PHOTO_SIDE` pixels.

A face is analysed at 112 x 112; the photo only carries the maps warped back onto it. A 153 KB
PNG of 6000 x 6000 pixels is under the decoder's pixel limit, yet its analysis (every map at the
photo's size) was 684 MB. So both sides shrink a photo before its analysis: the viewer's kernel
shrinks an upload as it decodes it, and the analysis service shrinks every face it receives
(gallery files included), so no answer and no cache entry is larger than a 512 px photo's.

    shrink(pixels)            # (H, W, 3) uint8 -> longer side <= 512 (the same array when small)
    shrunk(face)              # a wire Face whose photo is shrunk; its digest names the shrunk photo

numpy and PIL only: the viewer's kernel imports this without torch.
"""

from __future__ import annotations

import hashlib

import numpy as np
from PIL import Image

from cqa_core.explain.result import Photo
from workbench.wire import Face

MAX_PHOTO_SIDE = 512
"""Photos are shrunk so their longer side is at most this many pixels before alignment."""


def shrink(pixels: np.ndarray, side: int = MAX_PHOTO_SIDE) -> np.ndarray:
    """``pixels`` (H, W, 3) resized (bilinear) so the longer side is at most ``side``; small ones as they are."""
    h, w = pixels.shape[:2]
    if max(h, w) <= side:
        return pixels
    s = side / max(h, w)
    return np.asarray(Image.fromarray(pixels).resize((max(1, round(w * s)), max(1, round(h * s))), Image.BILINEAR))


def shrunk(face: Face, side: int = MAX_PHOTO_SIDE) -> Face:
    """``face`` with its photo shrunk to ``side``.

    A gallery photo's digest (the sha1 of its file) keys its stored MTCNN landmarks and its cached
    analysis; a shrunk photo's landmarks are in other coordinates, so it gets a digest of its own
    (the file's digest and the side, hashed). A photo already small keeps its digest.
    """
    source = face.source
    if isinstance(source, Photo):
        small = shrink(source.pixels, side)
        if small is source.pixels:
            return face
        digest = hashlib.sha1(f"{source.digest}:max-side-{side}".encode()).hexdigest()
        return Face(face.name, Photo(small, digest), face.align)
    if isinstance(source, np.ndarray):
        return Face(face.name, shrink(source, side), face.align)
    return face
