"""The workbench's model and cache: one model per kernel, every analysis cached by image hash.

The cache is ``cqa_core.explain.analysis.Analyser`` (keyed by the sha1 of the file / pixels and
the model's weights), so the same photo is never run twice and a retrained model is never stale.

Model, in order: env ``CQA_CHECKPOINT``; ``cqa_core.model.load_default()`` when its weights are installed;
else an *untrained* light model (seed 0), flagged so the header shows a banner.

Every number the views show comes from ``cqa_core.explain`` through :meth:`Session.analyse`
and friends; nothing here does tensor math. Faces are aligned with the library (MTCNN for
uploads; the fixed LFW "center" affine for gallery photos, which is ~100x faster on a CPU and
is exactly how LFW deep-funneled photos are framed; env ``CQA_ALIGN=mtcnn`` aligns them too).
Torch runs one intra-op thread in the kernel (env ``CQA_TORCH_THREADS`` changes it): one face at
a time, on a shared CPU, two contending threads made a forward pass ~20x slower.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

MAX_UPLOAD_BYTES = 10 * 1024 * 1024
"""Uploads larger than this are refused before decoding (10 MB). The repo's voila.json raises the
server's websocket message limit to 64 MB so that a 10-64 MB upload reaches the kernel and gets
this plain refusal; tornado drops anything larger without a word."""

MAX_PHOTO_SIDE = 512
"""Photos are shrunk so their longer side is at most this many pixels before alignment."""

CAM_SOURCES = ("attention", "similarity Grad-CAM", "integrated gradients", "occlusion")
SOURCE_METHODS = {"similarity Grad-CAM": "gradcam", "integrated gradients": "ig", "occlusion": "occlusion"}


class CenterDetector:
    """A 'detector' that never finds a face, so ``align_image`` uses its fixed LFW centre affine.

    LFW deep-funneled photos are all framed alike; this aligns a gallery photo in ~1 ms instead
    of the ~0.5 s MTCNN takes on a CPU.
    """

    def detect(self, img: np.ndarray, landmarks: bool = True):
        return None, None, None


@dataclass
class Face:
    """A face the user picked: a name, a source ``analyse`` accepts, and how to align it."""

    name: str
    source: Any  # path or (H, W, 3) uint8 array
    detector: Any = None  # None = MTCNN (uploads); CenterDetector() for gallery photos


def load_session_model(checkpoint: str | None = None):
    """(model, label, untrained) following the order in the module docstring."""
    from cqa_core.model import resolve_model

    return resolve_model(checkpoint, allow_untrained=True)


def shrink(photo: np.ndarray, side: int = MAX_PHOTO_SIDE) -> np.ndarray:
    """Resize a photo so its longer side is at most ``side`` pixels."""
    from PIL import Image

    h, w = photo.shape[:2]
    if max(h, w) <= side:
        return photo
    s = side / max(h, w)
    return np.asarray(Image.fromarray(photo).resize((max(1, round(w * s)), max(1, round(h * s))), Image.BILINEAR))


class Session:
    """One model, its description, and the cached analyses of ``cqa_core.explain.analysis``."""

    def __init__(self, checkpoint: str | None = None, align: str | None = None) -> None:
        import torch

        from cqa_core.explain.analysis import Analyser

        # one intra-op thread: a single face is ~20x faster than two contending threads on a shared CPU
        torch.set_num_threads(int(os.environ.get("CQA_TORCH_THREADS", "1")))
        self.model, self.label, self.untrained = load_session_model(checkpoint)
        self.align_mode = align or os.environ.get("CQA_ALIGN", "center")
        self.analyser = Analyser(maxsize=192)  # ~1.3 MB per LFW face analysis
        self.other_models: dict[str, Any] = {}

    @property
    def description(self) -> str:
        """'light stem, b=4, QAN' style summary of the model."""
        c = self.model.config
        return f"{c.stem} stem, b={c.branches}, {'QAN' if c.qan else 'no QAN'}"

    @property
    def branches(self) -> int:
        return int(self.model.config.branches)

    def gallery_face(self, name: str, path: str | os.PathLike) -> Face:
        """A gallery photo (centre-aligned unless CQA_ALIGN=mtcnn)."""
        return Face(name, str(path), CenterDetector() if self.align_mode == "center" else None)

    def upload_face(self, data: bytes, name: str) -> Face:
        """Decode an upload (refused over :data:`MAX_UPLOAD_BYTES`); it is aligned with MTCNN."""
        from cqa_core.data.imageio import ImageError, decode_image

        if len(data) > MAX_UPLOAD_BYTES:
            raise ImageError(f"{name}: {len(data) / 2**20:.1f} MB is over the {MAX_UPLOAD_BYTES / 2**20:.0f} MB upload limit")
        photo = shrink(decode_image(bytes(data), name=name))
        return Face(name, photo, None)

    def array_face(self, aligned: np.ndarray, name: str) -> Face:
        """A face that is already a 112 x 112 aligned crop (e.g. a masked face)."""
        return Face(name, np.ascontiguousarray(aligned), None)

    def analyse(self, face: Face, other: Face | None = None, methods: tuple[str, ...] = ("gradcam",), model=None):
        """``cqa_core.explain.analysis`` FaceAnalysis of a face (and pair), cached by image hash."""
        model = model or self.model
        if other is None:
            return self.analyser.face(model, face.source, face.detector)[0]
        self.analyser.face(model, other.source, other.detector)  # align the partner its own way
        return self.analyser(model, face.source, other.source, methods=methods, detector=face.detector)

    def source_map(self, face: Face, other: Face | None, source: str) -> np.ndarray:
        """(112, 112) map of ``source`` for ``face``; pair sources explain cos(face, other)."""
        if source == "attention":
            return self.analyse(face).attention.max(axis=0)
        if other is None:
            raise ValueError(f"{source} explains a similarity: pick a second face first")
        method = SOURCE_METHODS[source]
        return self.analyse(face, other, methods=(method,)).maps[method]

    def dataset_diversity(self, faces: list[Face]) -> list[float]:
        """Per-face CAL penalty over many faces (for the histogram)."""
        return [self.analyse(f).cal for f in faces]

    def mask_effect(self, face: Face, masked: np.ndarray, alpha: np.ndarray | None):
        """How an edited face differs from the clean one (quality deltas, similarity)."""
        from cqa_core.explain.quality import mask_effect

        return mask_effect(self.model, self.analyse(face).aligned, masked=masked, alpha=alpha)

    def load_other(self, path: str):
        """A second checkpoint for side-by-side comparisons (cached by path)."""
        from cqa_core.checkpoint import load_model

        if path not in self.other_models:
            self.other_models[path] = load_model(path)
        return self.other_models[path]


def gallery_paths(root: str | os.PathLike | None = None, people: int = 60) -> list[tuple[str, Path]]:
    """(name, path) of gallery photos: ``root`` / env CQA_FACES, else the first ``people`` LFW people.

    A folder of person sub-folders gives each person's first photo; a flat folder gives its photos.
    """
    from cqa_core.data import shared_data_dir
    from cqa_core.data.imageio import is_image_file

    root = root or os.environ.get("CQA_FACES") or shared_data_dir() / "lfw-deepfunneled"
    root = Path(root)
    if not root.is_dir():
        return []
    out: list[tuple[str, Path]] = []
    for entry in sorted(root.iterdir()):
        if entry.is_dir():
            photos = sorted(p for p in entry.iterdir() if is_image_file(p))
            if photos:
                out.append((entry.name.replace("_", " "), photos[0]))
        elif is_image_file(entry):
            out.append((entry.stem.replace("_", " "), entry))
        if len(out) >= people:
            break
    return out
