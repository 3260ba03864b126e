"""What the views talk to: a Session over one ``Backend``, the shared analysis service or an in-process engine.

    open_session(settings)           # workbench.start: CQA_ANALYSIS_URL set (``cqa workbench`` sets it):
                                     # a thin client of the service (``ServiceClient``), no torch here;
                                     # otherwise (JupyterLab, notebooks, tests) an ``Engine`` runs here

Both backends implement :class:`Backend` and give the same answers: the service runs an
``Engine``, the same code the in-process backend runs, and sends its ``FaceAnalysis`` back in
``workbench.wire``'s format. Every number the views show comes from ``cqa_core.explain``;
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
from typing import Any, Protocol

import numpy as np

from cqa_core.data.imageio import ImageError, decode_image
from cqa_core.evaluation.runs.calibration import Calibration, find_calibration
from cqa_core.explain.result import Check, FaceAnalysis, MaskEffect, PairAnalysis
from cqa_core.recognizers.registry import DEFAULT
from cqa_core.settings import AlignMode, Settings
from workbench.client import ServiceClient
from workbench.gallery import gallery_faces
from workbench.photo import shrink
from workbench.wire import Face, FaceSummary

MAX_UPLOAD_BYTES = 10 * 1024 * 1024
"""Uploads larger than this are refused before decoding (10 MB). voila.json raises the server's
websocket message limit to 64 MB so that a 10-64 MB upload reaches the kernel and gets this plain
refusal; tornado drops anything larger without a word."""


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


class Session:
    """What every view calls: model facts, face constructors and the analyses of ``cqa_core.explain``."""

    def __init__(self, settings: Settings, backend: Backend | None = None, viewer: str | None = None) -> None:
        """``backend``: the model side (``workbench.start.backend_for`` picks it); None is the client of the
        service ``settings.service_url`` names, which must then be set."""
        if backend is None and not settings.service_url:
            raise ValueError("no analysis service is set (CQA_ANALYSIS_URL): open the session with "
                             "workbench.start.open_session(settings), which runs the model in this process")
        self.settings = settings
        self.backend = backend or ServiceClient(settings.service_url, settings.service_token)
        self.viewer = viewer or f"viewer-{secrets.token_hex(12)}"  # whose uploads (never guessable by another)
        self._bye = weakref.finalize(self, self.backend.forget, self.viewer)  # also at the kernel's exit
        info = self.backend.info()
        self.label, self.untrained, self.branches, self.description = (
            info["label"], info["untrained"], int(info["branches"]), info["description"])
        # which models a viewer may add: any model file (a service that says so; a model in this process)
        self.any_model_path = bool(info.get("any_model_path", not self.backend.remote))
        self.models: dict[str, dict[str, Any]] = {DEFAULT: self.backend.load(DEFAULT)}  # spec -> facts
        self.current = DEFAULT  # the model every view shows (the Model picker changes it)

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

    def forget_uploads(self) -> None:
        """The viewer removed an upload: the backend drops every analysis of this viewer's uploads now
        (the ones still shown are analysed again from the pixels this kernel keeps, when next asked)."""
        self.backend.forget(self.viewer)

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
                model: str | None = None) -> FaceAnalysis | PairAnalysis:
        """``cqa_core.explain``'s FaceAnalysis of a face (PairAnalysis with ``other``), cached by (image,
        alignment, weights).

        ``model``: a spec from :meth:`load_other`, else the current model (:attr:`current`).
        """
        return self.backend.analyse(face, other, tuple(methods), model or self.current, viewer=self.viewer)

    def info(self, model: str | None = None) -> dict[str, Any]:
        """Facts of a loaded model (name, kind, description, branches, whitebox, methods); the current one by default."""
        return self.models[model or self.current]

    def calibration(self, model: str | None = None) -> Calibration | None:
        """The model's saved calibration from a benchmark run in the runs folder (``Settings.runs_dir``), or None."""
        digest = self.info(model).get("digest")
        return find_calibration(self.settings.runs_dir, digest) if digest else None

    def threshold(self, model: str | None = None) -> dict[str, Any]:
        """The model's own LFW threshold, or {"computing": note} the first time (it runs in the background)."""
        return self.backend.threshold(model or self.current)

    def summaries(self, faces: list[Face]) -> list[FaceSummary]:
        """Quality, overall quality, CAL and norm of many faces (batched; cached per face), current CQA-Face model."""
        return self.backend.summaries(faces, self.current, viewer=self.viewer)

    def methods(self, model: str | None = None, pair: bool | None = None) -> dict[str, str]:
        """label -> registry name of the methods the dashboard lists for the model, in the registry's order
        (the records' ``listed``; pair ones only with ``pair=True``)."""
        return {m["label"]: m["name"] for m in self.info(model)["methods"]
                if m["listed"] and (pair is None or m["pair"] == pair)}

    def method(self, label: str, model: str | None = None) -> dict[str, Any]:
        """The registry record (name, label, needs, pair, cost, ...) of the method the views call ``label``."""
        found = next((m for m in self.info(model)["methods"] if m["label"] == label), None)
        if found is None:
            raise ValueError(f"{label} is not available for {self.info(model)['name']}")
        return found

    def slow(self, label: str, model: str | None = None) -> bool:
        """Whether the method takes seconds or more (its declared cost): the views say so while it runs."""
        return self.method(label, model)["cost"] == "slow"

    def sources(self, model: str | None = None) -> tuple[str, ...]:
        """The labels the Face tab offers for the model."""
        return tuple(self.methods(model))

    def source_map(self, face: Face, other: Face | None, source: str, model: str | None = None) -> np.ndarray:
        """(S, S) map of ``source`` (a label of :meth:`sources`) for ``face``; pair maps explain cos(face, other)."""
        m = self.method(source, model)
        name = m["name"]
        if not m["pair"]:
            return self.analyse(face, methods=(name,), model=model).maps[name]
        if other is None:
            raise ValueError(f"{source} explains a similarity: pick a second face first")
        return self.analyse(face, other, methods=(name,), model=model).maps[name][0]

    def source_checks(self, face: Face, other: Face | None, source: str, model: str | None = None) -> Check | None:
        """The method's check of ``face``'s map against ``other`` (IG's completeness), or None."""
        m = self.method(source, model)
        if not m["pair"] or other is None:
            return None
        checks = self.analyse(face, other, methods=(m["name"],), model=model).checks.get(m["name"])
        return checks[0] if checks else None

    def dataset_diversity(self, faces: list[Face]) -> list[float]:
        """Per-face CAL penalty over many faces (for the histogram)."""
        return [s.cal for s in self.summaries(faces)]

    def mask_effect(self, face: Face, masked: np.ndarray, alpha: np.ndarray | None) -> MaskEffect:
        """How an edited face differs from the clean one (quality deltas, similarity), current CQA-Face model."""
        return self.backend.mask_effect(face, masked, alpha, self.current, viewer=self.viewer)

    def load_other(self, spec: str) -> str:
        """Load another model (a registered name such as "dlib", or a .safetensors, .pth, .onnx path): its spec,
        for ``analyse(model=...)`` (the backend resolves it: ``workbench.service.models.spec_key``)."""
        info = self.backend.load(spec.strip())
        self.models[info["spec"]] = info
        return info["spec"]
