"""What the views talk to: a Session over one ``Backend``, the shared analysis service or an in-process engine.

    Session(Settings.from_env())     # CQA_ANALYSIS_URL set (``cqa workbench`` sets it): a thin client of
                                     # the service (``ServiceClient``); no torch in this process
    Session(Settings())              # otherwise (JupyterLab, notebooks, tests): an ``Engine`` runs here

Both backends implement :class:`Backend` and give the same answers: the service runs an
``Engine``, the same code the in-process backend runs, and sends its ``FaceAnalysis`` back in
``workbench.service.wire``'s format. Every number the views show comes from ``cqa_core.explain``;
nothing here does tensor math.

Each Session is one viewer with its own unguessable id (:attr:`Session.viewer`), sent with every
analysis: the backend keeps the analyses of this viewer's uploads apart from everyone else's and
drops them when the Session ends (:meth:`Session.close`, also run when it is garbage-collected or its
kernel exits). Uploads are decoded in memory and never written anywhere.
"""

from __future__ import annotations

import secrets
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from PIL import Image

from cqa_core.data.imageio import ImageError, decode_image
from cqa_core.explain.result import FaceAnalysis, MaskEffect
from cqa_core.settings import AlignMode, Settings
from workbench.gallery import gallery_faces
from workbench.service.client import ServiceClient
from workbench.service.wire import Face, FaceSummary

MAX_UPLOAD_BYTES = 10 * 1024 * 1024
"""Uploads larger than this are refused before decoding (10 MB). voila.json raises the server's
websocket message limit to 64 MB so that a 10-64 MB upload reaches the kernel and gets this plain
refusal; tornado drops anything larger without a word."""

MAX_PHOTO_SIDE = 512
"""Photos are shrunk so their longer side is at most this many pixels before alignment."""

SOURCES = ("attention", "gradcam", "ig", "occlusion", "rise")
"""The explainer registry's methods the dashboard offers, in this order, where the model supports them."""


class Backend(Protocol):
    """What a Session needs from the model side: ``Engine`` (in-process) and ``ServiceClient`` (HTTP)."""

    remote: bool  # calls may wait on other viewers (busy notes go to ``status``)
    status: Callable[[str | None], None]

    def info(self) -> dict[str, Any]: ...

    def analyse(self, face: Face, other: Face | None = None, methods: tuple[str, ...] = ("gradcam",),
                model: str | None = None, viewer: str | None = None) -> FaceAnalysis: ...

    def summaries(self, faces: list[Face], model: str | None = None, viewer: str | None = None) -> list[FaceSummary]: ...

    def mask_effect(self, face: Face, masked: np.ndarray, alpha: np.ndarray | None,
                    model: str | None = None, viewer: str | None = None) -> MaskEffect: ...

    def forget(self, viewer: str) -> bool: ...

    def load(self, spec: str) -> dict[str, Any]: ...

    def threshold(self, spec: str | None = None) -> dict[str, Any]: ...


def backend_for(settings: Settings) -> Backend:
    """The service's client when ``settings.service_url`` is set, else an in-process engine."""
    if settings.service_url:
        return ServiceClient(settings.service_url, settings.service_token)
    from workbench.service.engine import Engine  # torch: only an in-process session loads it

    return Engine(settings)


def load_session_model(settings: Settings | None = None):
    """(model, label, untrained) of the settings (``Settings.from_env()`` by default), for notebooks."""
    from cqa_core.checkpoint import (
        resolve_model,  # torch: notebooks that compute, not viewer kernels
    )

    settings = settings or Settings.from_env()
    return resolve_model(settings.checkpoint, allow_untrained=True)


def shrink(photo: np.ndarray, side: int = MAX_PHOTO_SIDE) -> np.ndarray:
    """Resize a photo so its longer side is at most ``side`` pixels."""
    h, w = photo.shape[:2]
    if max(h, w) <= side:
        return photo
    s = side / max(h, w)
    return np.asarray(Image.fromarray(photo).resize((max(1, round(w * s)), max(1, round(h * s))), Image.BILINEAR))


class Session:
    """What every view calls: model facts, face constructors and the analyses of ``cqa_core.explain``."""

    def __init__(self, settings: Settings | None = None, backend: Backend | None = None,
                 viewer: str | None = None) -> None:
        self.settings = settings or Settings.from_env()
        self.backend = backend or backend_for(self.settings)
        self.viewer = viewer or f"viewer-{secrets.token_hex(12)}"  # whose uploads (never guessable by another)
        self._bye = weakref.finalize(self, self.backend.forget, self.viewer)  # also at the kernel's exit
        info = self.backend.info()
        self.label, self.untrained, self.branches, self.description = (
            info["label"], info["untrained"], int(info["branches"]), info["description"])
        self.models: dict[str, dict[str, Any]] = {"default": self.backend.load("default")}  # spec -> facts
        self.current = "default"  # the model every view shows (the Model picker changes it)

    @property
    def remote(self) -> bool:
        return self.backend.remote

    @property
    def model(self):
        """The in-process model (None with a remote service)."""
        return getattr(self.backend, "model", None)

    def close(self) -> None:
        """This viewer leaves: the backend drops the analyses of its uploads (once)."""
        self._bye()

    def set_status(self, callback: Callable[[str | None], None]) -> None:
        """Where 'busy, N ahead of you' / 'service restarting' notes go."""
        self.backend.status = callback

    def gallery(self) -> list[Face]:
        """The gallery of the settings (``workbench.gallery``), each face with its alignment."""
        return gallery_faces(self.settings)

    def upload_face(self, data: bytes, name: str) -> Face:
        """Decode an upload in memory (refused over :data:`MAX_UPLOAD_BYTES`); it is aligned with MTCNN.

        The face holds pixels, never a path: the backend treats it as this viewer's own (see the
        module docstring), and nothing of it is written to disk."""
        if len(data) > MAX_UPLOAD_BYTES:
            raise ImageError(f"{name}: {len(data) / 2**20:.1f} MB is over the {MAX_UPLOAD_BYTES / 2**20:.0f} MB upload limit")
        return Face(name, shrink(decode_image(bytes(data), name=name)), AlignMode.MTCNN)

    def array_face(self, aligned: np.ndarray, name: str) -> Face:
        """A face that is already a 112 x 112 aligned crop (e.g. a masked face)."""
        return Face(name, np.ascontiguousarray(aligned), AlignMode.MTCNN)

    def analyse(self, face: Face, other: Face | None = None, methods: tuple[str, ...] = ("gradcam",),
                model: str | None = None) -> FaceAnalysis:
        """``cqa_core.explain`` FaceAnalysis of a face (and pair), cached by (image, alignment, weights).

        ``model``: a spec from :meth:`load_other`, else the current model (:attr:`current`).
        """
        return self.backend.analyse(face, other, tuple(methods), model or self.current, viewer=self.viewer)

    def info(self, model: str | None = None) -> dict[str, Any]:
        """Facts of a loaded model (name, kind, description, branches, whitebox, methods); the current one by default."""
        return self.models[model or self.current]

    def threshold(self, model: str | None = None) -> dict[str, Any]:
        """The model's own LFW threshold, or {"computing": note} the first time (it runs in the background)."""
        return self.backend.threshold(model or self.current)

    def summaries(self, faces: list[Face]) -> list[FaceSummary]:
        """Quality, overall quality, CAL and norm of many faces (batched; cached per face), current CQA-Face model."""
        return self.backend.summaries(faces, self.current, viewer=self.viewer)

    def methods(self, model: str | None = None, pair: bool | None = None) -> dict[str, str]:
        """label -> registry name of the dashboard's methods the model supports (pair ones only with ``pair``)."""
        found = {m["name"]: m for m in self.info(model)["methods"] if pair is None or m["pair"] == pair}
        return {found[n]["label"]: n for n in SOURCES if n in found}

    def sources(self, model: str | None = None) -> tuple[str, ...]:
        """The labels the Face tab offers for the model."""
        return tuple(self.methods(model))

    def source_map(self, face: Face, other: Face | None, source: str, model: str | None = None) -> np.ndarray:
        """(S, S) map of ``source`` (a label of :meth:`sources`) for ``face``; pair maps explain cos(face, other)."""
        name = self.methods(model).get(source)
        if name is None:
            raise ValueError(f"{source} is not available for {self.info(model)['name']}")
        if name == "attention":
            return self.analyse(face, model=model).attention.max(axis=0)
        if other is None:
            raise ValueError(f"{source} explains a similarity: pick a second face first")
        return self.analyse(face, other, methods=(name,), model=model).maps[name]

    def dataset_diversity(self, faces: list[Face]) -> list[float]:
        """Per-face CAL penalty over many faces (for the histogram)."""
        return [s.cal for s in self.summaries(faces)]

    def mask_effect(self, face: Face, masked: np.ndarray, alpha: np.ndarray | None) -> MaskEffect:
        """How an edited face differs from the clean one (quality deltas, similarity), current CQA-Face model."""
        return self.backend.mask_effect(face, masked, alpha, self.current, viewer=self.viewer)

    def load_other(self, spec: str) -> str:
        """Load another model (a checkpoint, .pth, .onnx path or "dlib"): its spec, for ``analyse(model=...)``."""
        spec = spec.strip()
        info = self.backend.load(spec if spec in ("default", "dlib") else str(Path(spec).expanduser()))
        self.models[info["spec"]] = info
        return info["spec"]
