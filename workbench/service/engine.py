"""The model host: the session's model, other checkpoints, the aligner and one analysis cache.

An ``Engine`` is what the analysis service runs, and what a ``Session`` runs in-process when no
service is set (JupyterLab, notebooks, tests): the same code gives the same answers either way.
It implements the ``Backend`` protocol of ``workbench.session``, like ``ServiceClient``.

Model: the "default" spec of the recognizer registry, as every other model is loaded: ``Settings.checkpoint``,
else the bundled default model, else an *untrained* light model
(seed 0), flagged so the header shows a banner (``cqa_core.checkpoint.resolve_model``). Other
recognizers (a CQA-Face checkpoint, an insightface ``.pth``, an ``.onnx``, ``dlib``, a plug-in's:
a "spec" of ``cqa_core.recognizers.load``) are loaded once each and kept in a small LRU cache
(:mod:`.models`); each gets its own LFW threshold, computed once in a child process and kept on
disk (``cqa_core.evaluation.threshold.Thresholds``: both ends of that computation live there).
Alignment: MTCNN, stored on disk once per gallery photo (``AlignmentStore``, keyed by the file's
hash), or the fixed LFW centre affine, per face (``Face.align``). Analyses are cached by (image
hash, alignment, weights). torch runs ``Settings.torch_threads`` intra-op threads: one face at a
time on a shared CPU, two contending threads made a forward pass ~20x slower.

Uploads are biometric data: a face that arrives as pixels is analysed in its viewer's own cache
(:mod:`.uploads`, :meth:`Engine.uploads_of`), never in the shared one, and :meth:`Engine.forget`
drops them when the viewer leaves. The kernel sends the pixels with every call, so a forgotten
entry is only recomputed. What stays here is the routing: which cache and which recognizer answer
each request, and the thread setup of an in-process model.
"""

from __future__ import annotations

import atexit
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from cqa_core.checkpoint import DEFAULT_WEIGHTS
from cqa_core.data.align import detector_for
from cqa_core.data.align_store import AlignmentStore
from cqa_core.evaluation.threshold import Thresholds
from cqa_core.explain.analysis import Analyser
from cqa_core.explain.methods import available
from cqa_core.explain.quality import mask_effect
from cqa_core.explain.result import FaceAnalysis, MaskEffect
from cqa_core.recognizers.base import Recognizer
from cqa_core.recognizers.cqa_files import UNTRAINED
from cqa_core.recognizers.load import load_recognizer
from cqa_core.recognizers.registry import DEFAULT
from cqa_core.settings import Settings
from workbench.service.models import Recognizers, spec_key
from workbench.service.uploads import UploadCaches, is_upload
from workbench.wire import Face, FaceSummary


class Engine:
    """The model, its aligner and the analysis cache (``Backend`` of a Session, or the service's)."""

    remote = False

    def __init__(self, settings: Settings | None = None, maxsize: int = 192) -> None:
        settings = settings or Settings()
        torch.set_num_threads(settings.torch_threads)
        self.settings = settings
        self.default = load_recognizer(DEFAULT, checkpoint=settings.checkpoint)  # the served CQA-Face
        self.model, self.label = self.default.readout.model, self.default.name
        self.untrained = self.default.note == UNTRAINED
        self.analyser = Analyser(maxsize=maxsize, store=AlignmentStore(cache=settings.cache_root))
        self.upload_caches = UploadCaches()
        self.models = Recognizers(self.default)
        self.thresholds = Thresholds(settings.lfw, settings.cache_root)
        atexit.register(self.close)
        self.status: Callable[[str | None], None] = lambda text: None  # busy notes: nothing waits in-process

    def info(self) -> dict[str, Any]:
        c = self.model.config
        return {"label": self.label, "untrained": bool(self.untrained), "branches": int(c.branches),
                "description": f"{c.stem} stem, b={c.branches}, {'QAN' if c.qan else 'no QAN'}"}

    def recognizer(self, spec: str | None = None) -> Recognizer:
        """The session's model, or another recognizer (loaded once, LRU-cached: :mod:`.models`)."""
        return self.models.get(spec)

    @property
    def uploads(self) -> dict[str, Any]:
        """viewer -> (its uploads' analysis cache, last heard from)."""
        return self.upload_caches.viewers

    def load(self, spec: str) -> dict[str, Any]:
        """Load (and check) a recognizer now: its :meth:`model_info`, whose "spec" ``analyse(model=...)`` takes."""
        return self.model_info(spec)

    def model_info(self, spec: str | None = None) -> dict[str, Any]:
        """What the views need to know of a model: name, kind, what it can show."""
        rec = self.recognizer(spec)
        return {"spec": spec_key(spec), "name": rec.name, "kind": rec.kind, "description": rec.describe(),
                "branches": rec.readout.count if rec.readout is not None else 0, "whitebox": rec.whitebox,
                "note": rec.note, "digest": rec.digest, "methods": [m.record() for m in available(rec)]}

    def threshold(self, spec: str | None = None, wait: bool = False) -> dict[str, Any]:
        """The model's LFW View 1 threshold (``evaluation.threshold.Thresholds``), {"computing": note} while
        its first computation runs in a child process, or {"unavailable": note} on a machine without LFW
        (the cosine is then shown without a verdict) or for an untrained model."""
        rec = self.recognizer(spec)
        untrained = rec.note == UNTRAINED
        return self.thresholds.of(rec, self._weights(spec), wait=wait, untrained=untrained)

    def _weights(self, spec: str | None) -> str:
        """What the threshold's child loads for ``spec``: the served weights' file, a model file, or a name."""
        key = spec_key(spec)
        return (self.settings.checkpoint or str(DEFAULT_WEIGHTS)) if key == DEFAULT else key

    def close(self) -> None:
        """Stop threshold computations still running (a half-done one leaves no file behind)."""
        self.thresholds.close()

    def uploads_of(self, viewer: str | None) -> Analyser:
        """The viewer's own analysis cache for its uploads: in memory only (no alignment store)."""
        return self.upload_caches.of(viewer)

    def forget(self, viewer: str) -> bool:
        """Drop every analysis of the viewer's uploads (the viewer left); True when it had any."""
        return self.upload_caches.forget(viewer)

    def _cache_for(self, viewer: str | None, *faces: Face | None) -> Analyser:
        return self.uploads_of(viewer) if any(is_upload(f) for f in faces) else self.analyser

    def analyse(self, face: Face, other: Face | None = None, methods: tuple[str, ...] = ("gradcam",),
                model: str | None = None, viewer: str | None = None) -> FaceAnalysis:
        """``FaceAnalysis`` of a face and optional partner, by the model ``model`` names (a spec).

        ``viewer``: who asks; an upload among the faces is analysed in that viewer's own cache."""
        return self._cache_for(viewer, face, other)(
            self.recognizer(model), face.source, other.source if other else None, methods=tuple(methods),
            detector=detector_for(face.align), other_detector=detector_for(other.align) if other else "same")

    def analyse_many(self, faces: list[Face], model: str | None = None,
                     viewers: list[str | None] | None = None) -> list[FaceAnalysis]:
        """Single-face analyses of many faces (``viewers[i]`` asks for ``faces[i]``); the uncached ones
        of each cache run as one batch."""
        rec = self.recognizer(model)
        groups: dict[int, tuple[Analyser, list[int]]] = {}
        for i, (face, viewer) in enumerate(zip(faces, viewers or [None] * len(faces), strict=True)):
            cache = self._cache_for(viewer, face)
            groups.setdefault(id(cache), (cache, []))[1].append(i)
        out: list[FaceAnalysis | None] = [None] * len(faces)
        for cache, idx in groups.values():
            found = cache.faces(rec, [faces[i].source for i in idx], [detector_for(faces[i].align) for i in idx])
            for i, r in zip(idx, found, strict=True):
                out[i] = r[0]
        return out  # type: ignore[return-value]

    def summaries(self, faces: list[Face], model: str | None = None, viewer: str | None = None) -> list[FaceSummary]:
        """Quality, overall quality, CAL and norm of many faces (batched; cached per face)."""
        return [FaceSummary.of(fa) for fa in self.analyse_many(faces, model, [viewer] * len(faces))]

    def mask_effect(self, face: Face, masked: np.ndarray, alpha: np.ndarray | None,
                    model: str | None = None, viewer: str | None = None) -> MaskEffect:
        """How an edited (masked) version of a face changes each branch of a CQA-Face model."""
        rec = self.recognizer(model)
        if rec.readout is None:
            raise ValueError(f"the quality deltas are QAN's: {rec.name} has no QAN")
        return mask_effect(rec.readout.model, self.analyse(face, model=model, viewer=viewer).aligned, masked=masked,
                           alpha=alpha)


