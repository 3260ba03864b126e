"""What the views talk to: a Session, backed by the shared analysis service or by a model in-process.

    Session()            # env CQA_ANALYSIS_URL set (``cqa workbench`` sets it): a thin client of
                         # ``workbench.service``; no torch in this process
    Session()            # otherwise (JupyterLab, notebooks, tests): the model runs here

Both backends give the same answers: the service runs :class:`Engine`, the same code the
in-process backend runs, and sends its ``FaceAnalysis`` back in ``cqa_core.explain.result``'s
wire format. Every number the views show comes from ``cqa_core.explain``; nothing here does
tensor math.

Model (in-process, or the service's): env ``CQA_CHECKPOINT``; ``cqa_core.model.load_default()``
when its weights are installed; else an *untrained* light model (seed 0), flagged so the header
shows a banner. Analyses are cached by (image hash, alignment, weights).

Alignment: MTCNN for every face by default, stored on disk once per photo
(``cqa_core.data.align_store.AlignmentStore``, keyed by the file's hash), so a gallery is
detected once, ever. The fixed LFW centre affine only on request (env ``CQA_ALIGN=center``) or
for a gallery folder that says it is LFW-framed (a file ``.cqa-framing`` containing ``lfw``).
In-process, torch runs one intra-op thread (env ``CQA_TORCH_THREADS``): one face at a time on a
shared CPU, two contending threads made a forward pass ~20x slower.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from cqa_core.data.align_store import CenterDetector  # noqa: F401 - re-exported for older imports

MAX_UPLOAD_BYTES = 10 * 1024 * 1024
"""Uploads larger than this are refused before decoding (10 MB). voila.json raises the server's
websocket message limit to 64 MB so that a 10-64 MB upload reaches the kernel and gets this plain
refusal; tornado drops anything larger without a word."""

MAX_PHOTO_SIDE = 512
"""Photos are shrunk so their longer side is at most this many pixels before alignment."""

CAM_SOURCES = ("attention", "similarity Grad-CAM", "integrated gradients", "occlusion")
SOURCE_METHODS = {"similarity Grad-CAM": "gradcam", "integrated gradients": "ig", "occlusion": "occlusion"}
ALIGN_MODES = ("mtcnn", "center")
FRAMING_FILE = ".cqa-framing"


@dataclass
class Face:
    """A face the user picked: a name, a source (file path or (H, W, 3) uint8 array), its alignment."""

    name: str
    source: Any
    align: str = "mtcnn"  # "mtcnn" (detect, stored on disk) | "center" (fixed LFW affine)

    @property
    def detector(self) -> Any:
        return detector_for(self.align)


def detector_for(align: str) -> Any:
    """The ``cqa_core.data.align`` detector of an alignment mode (None = MTCNN)."""
    return CenterDetector() if align == "center" else None


def gallery_align(path: str | os.PathLike, mode: str = "mtcnn") -> str:
    """A gallery photo's alignment: ``mode`` ("center" on request), or "center" for an LFW-framed folder."""
    return "center" if mode == "center" or lfw_framed(path) else "mtcnn"


class FaceSummary(NamedTuple):
    """The few numbers of a face that gallery-wide views need (no maps)."""

    quality: np.ndarray  # (b,) S_hat
    overall: float  # attention-weighted S_hat (``render.overall_quality``)
    cal: float  # CAL penalty
    embedding_norm: float


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


def summary_of(fa) -> FaceSummary:
    from cqa_core.explain.render import overall_quality

    return FaceSummary(np.asarray(fa.quality), float(overall_quality(fa.quality, fa.attention)), float(fa.cal),
                       float(fa.embedding_norm))


class Engine:
    """The model, its aligner and the analysis cache: what the service runs, or a Session in-process."""

    def __init__(self, checkpoint: str | None = None, threads: int | None = None, maxsize: int = 192) -> None:
        import torch

        from cqa_core.data.align_store import AlignmentStore
        from cqa_core.explain.analysis import Analyser

        torch.set_num_threads(threads or int(os.environ.get("CQA_TORCH_THREADS", "1")))
        self.model, self.label, self.untrained = load_session_model(checkpoint)
        self.analyser = Analyser(maxsize=maxsize, store=AlignmentStore())  # ~1.3 MB per LFW face analysis
        self.other_models: dict[str, Any] = {}

    def info(self) -> dict[str, Any]:
        c = self.model.config
        return {"label": self.label, "untrained": bool(self.untrained), "branches": int(c.branches),
                "description": f"{c.stem} stem, b={c.branches}, {'QAN' if c.qan else 'no QAN'}"}

    def model_for(self, checkpoint: str | None):
        """The session model, or a second checkpoint (loaded once, cached by path)."""
        if not checkpoint:
            return self.model
        if checkpoint not in self.other_models:
            from cqa_core.checkpoint import load_model

            self.other_models[checkpoint] = load_model(checkpoint)
        return self.other_models[checkpoint]

    def analyse(self, face: Any, other: Any = None, methods: tuple[str, ...] = ("gradcam",), align: str = "mtcnn",
                other_align: str = "mtcnn", checkpoint: str | None = None):
        """``FaceAnalysis`` of a face (``source`` as ``analyse`` takes it) and optional partner."""
        return self.analyser(self.model_for(checkpoint), face, other, methods=tuple(methods),
                             detector=detector_for(align), other_detector=detector_for(other_align))

    def analyse_many(self, faces: list[Any], aligns: list[str], checkpoint: str | None = None) -> list:
        """Single-face analyses of many faces; the uncached ones run as one batch."""
        dets = [detector_for(a) for a in aligns]
        return [r[0] for r in self.analyser.faces(self.model_for(checkpoint), faces, dets)]

    def mask_effect(self, face: Any, align: str, masked: np.ndarray, alpha: np.ndarray | None):
        from cqa_core.explain.quality import mask_effect

        return mask_effect(self.model, self.analyse(face, align=align).aligned, masked=masked, alpha=alpha)


class Session:
    """What every view calls: model facts, face constructors and the analyses of ``cqa_core.explain``."""

    def __init__(self, checkpoint: str | None = None, align: str | None = None, url: str | None = None) -> None:
        url = url or os.environ.get("CQA_ANALYSIS_URL")
        if url:
            from workbench.client import ServiceClient

            self.backend: Any = ServiceClient(url)
        else:
            self.backend = Engine(checkpoint)
        info = self.backend.info()
        self.remote = bool(url)
        self.label, self.untrained, self.branches, self.description = (
            info["label"], info["untrained"], int(info["branches"]), info["description"])
        self.align_mode = align or os.environ.get("CQA_ALIGN", "mtcnn")
        if self.align_mode not in ALIGN_MODES:
            raise ValueError(f"CQA_ALIGN={self.align_mode!r}: choose from {', '.join(ALIGN_MODES)}")

    @property
    def model(self):
        """The in-process model (None with a remote service)."""
        return getattr(self.backend, "model", None)

    def set_status(self, callback: Callable[[str | None], None]) -> None:
        """Where 'busy, N ahead of you' / 'service restarting' notes go (remote only)."""
        if self.remote:
            self.backend.status = callback

    def gallery_face(self, name: str, path: str | os.PathLike) -> Face:
        """A gallery photo: MTCNN-aligned unless CQA_ALIGN=center or its folder says it is LFW-framed."""
        return Face(name, str(path), gallery_align(path, self.align_mode))

    def upload_face(self, data: bytes, name: str) -> Face:
        """Decode an upload (refused over :data:`MAX_UPLOAD_BYTES`); it is aligned with MTCNN."""
        from cqa_core.data.imageio import ImageError, decode_image

        if len(data) > MAX_UPLOAD_BYTES:
            raise ImageError(f"{name}: {len(data) / 2**20:.1f} MB is over the {MAX_UPLOAD_BYTES / 2**20:.0f} MB upload limit")
        photo = shrink(decode_image(bytes(data), name=name))
        return Face(name, photo, "mtcnn")

    def array_face(self, aligned: np.ndarray, name: str) -> Face:
        """A face that is already a 112 x 112 aligned crop (e.g. a masked face)."""
        return Face(name, np.ascontiguousarray(aligned), "mtcnn")

    def analyse(self, face: Face, other: Face | None = None, methods: tuple[str, ...] = ("gradcam",), model=None):
        """``cqa_core.explain`` FaceAnalysis of a face (and pair), cached by (image, alignment, weights).

        ``model``: a handle from :meth:`load_other` (a second checkpoint), else the session's model.
        """
        kw = {"align": face.align, "other_align": other.align if other else "mtcnn", "checkpoint": model}
        return self.backend.analyse(face.source, other.source if other else None, methods=tuple(methods), **kw)

    def summaries(self, faces: list[Face]) -> list[FaceSummary]:
        """Quality, overall quality, CAL and norm of many faces (batched; cached per face)."""
        if self.remote:
            return self.backend.summaries([f.source for f in faces], [f.align for f in faces])
        return [summary_of(fa) for fa in self.backend.analyse_many([f.source for f in faces], [f.align for f in faces])]

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
        return [s.cal for s in self.summaries(faces)]

    def mask_effect(self, face: Face, masked: np.ndarray, alpha: np.ndarray | None):
        """How an edited face differs from the clean one (quality deltas, similarity)."""
        return self.backend.mask_effect(face.source, face.align, masked, alpha)

    def load_other(self, path: str):
        """A second checkpoint for side-by-side comparisons: a handle for ``analyse(model=...)``."""
        path = str(Path(path).expanduser())
        self.backend.model_for(path)  # loads (and checks) it now, so a bad path fails here
        return path


def lfw_framed(path: str | os.PathLike) -> bool:
    """True when the photo's folder (or its parent, for person sub-folders) says it is LFW-framed."""
    for d in list(Path(path).parents)[:2]:
        marker = d / FRAMING_FILE
        if marker.is_file():
            return marker.read_text().strip().lower() == "lfw"
    return False


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
