"""The model host: the session's model, other checkpoints, the aligner and one analysis cache.

An ``Engine`` is what the analysis service runs, and what a ``Session`` runs in-process when no
service is set (JupyterLab, notebooks, tests): the same code gives the same answers either way.
It implements the ``Backend`` protocol of ``workbench.session``, like ``ServiceClient``.

Model: ``Settings.checkpoint``, else the bundled default model, else an *untrained* light model
(seed 0), flagged so the header shows a banner (``cqa_core.checkpoint.resolve_model``). Other
recognizers (a CQA-Face checkpoint, an insightface ``.pth``, an ``.onnx``, ``dlib``: a "spec" of
``cqa_core.recognizers.load``) are loaded once each and kept in a small LRU cache; each gets its
own LFW threshold, computed once and kept on disk (``cqa_core.evaluation.threshold``).
Alignment: MTCNN, stored on disk once per photo (``AlignmentStore``, keyed by the file's hash), or
the fixed LFW centre affine, per face (``Face.align``). Analyses are cached by (image hash,
alignment, weights). torch runs ``Settings.torch_threads`` intra-op threads: one face at a time on a
shared CPU, two contending threads made a forward pass ~20x slower.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cqa_core.checkpoint import resolve_model
from cqa_core.data import lfw_dir
from cqa_core.data.align import detector_for
from cqa_core.data.align_store import AlignmentStore
from cqa_core.evaluation.threshold import PAIRS, lfw_threshold, threshold_path
from cqa_core.explain.analysis import Analyser
from cqa_core.explain.methods import available
from cqa_core.explain.quality import mask_effect
from cqa_core.explain.result import FaceAnalysis, MaskEffect
from cqa_core.recognizers.base import Recognizer
from cqa_core.recognizers.cqa import from_cqa
from cqa_core.recognizers.load import load_recognizer
from cqa_core.settings import Settings
from workbench.service.wire import Face, FaceSummary

MAX_MODELS = 4
"""Recognizers besides the session's kept loaded at once (least recently used goes first)."""
DEFAULT = "default"
"""The spec of the session's own model."""


def spec_key(spec: str | None) -> str:
    """One key per model: "default", "dlib", or the resolved path of a model file."""
    text = str(spec or DEFAULT).strip()
    return text if text in (DEFAULT, "dlib") else str(Path(text).expanduser().resolve())


class Engine:
    """The model, its aligner and the analysis cache (``Backend`` of a Session, or the service's)."""

    remote = False

    def __init__(self, settings: Settings | None = None, maxsize: int = 192) -> None:
        settings = settings or Settings()
        torch.set_num_threads(settings.torch_threads)
        self.settings = settings
        self.model, self.label, self.untrained = resolve_model(settings.checkpoint, allow_untrained=True)
        self.default = from_cqa(self.model, name=self.label, source=settings.checkpoint)
        self.analyser = Analyser(maxsize=maxsize, store=AlignmentStore(cache=settings.cache_root))
        self.others: OrderedDict[str, Recognizer] = OrderedDict()
        self._thresholds: dict[str, Future] = {}  # weights digest -> its threshold's computation
        self._lock = threading.Lock()
        self.status: Callable[[str | None], None] = lambda text: None  # busy notes: nothing waits in-process

    def info(self) -> dict[str, Any]:
        c = self.model.config
        return {"label": self.label, "untrained": bool(self.untrained), "branches": int(c.branches),
                "description": f"{c.stem} stem, b={c.branches}, {'QAN' if c.qan else 'no QAN'}"}

    def recognizer(self, spec: str | None = None) -> Recognizer:
        """The session's model, or another recognizer (loaded once, LRU-cached by :func:`spec_key`)."""
        key = spec_key(spec)
        if key == DEFAULT:
            return self.default
        if key not in self.others:
            self.others[key] = load_recognizer(key)
            while len(self.others) > MAX_MODELS:
                self.others.popitem(last=False)
        self.others.move_to_end(key)
        return self.others[key]

    def load(self, spec: str) -> dict[str, Any]:
        """Load (and check) a recognizer now: its :meth:`model_info`, whose "spec" ``analyse(model=...)`` takes."""
        return self.model_info(spec)

    def model_info(self, spec: str | None = None) -> dict[str, Any]:
        """What the views need to know of a model: name, kind, what it can show."""
        rec = self.recognizer(spec)
        return {"spec": spec_key(spec), "name": rec.name, "kind": rec.kind, "description": rec.describe(),
                "branches": rec.branches, "whitebox": rec.whitebox, "note": rec.note,
                "methods": [{"name": m.name, "label": m.label, "needs": m.needs.value, "pair": m.pair}
                            for m in available(rec)]}

    def threshold(self, spec: str | None = None, wait: bool = False) -> dict[str, Any]:
        """The model's LFW View 1 threshold (``evaluation.threshold``), {"computing": note} while its first
        computation (minutes: the photos are aligned once, then embedded) runs in the background, or
        {"unavailable": note} on a machine without LFW (the cosine is then shown without a verdict)."""
        rec = self.recognizer(spec)
        if threshold_path(rec, self.settings.cache_root).is_file():
            return lfw_threshold(rec, self.settings.cache_root)
        if not (lfw_dir() / PAIRS).is_file():
            return {"unavailable": f"no verdict: a model's own threshold is computed on LFW View 1, and this machine "
                                   f"has no {lfw_dir() / PAIRS}"}
        with self._lock:
            job = self._thresholds.get(rec.digest)
            if job is None or (job.done() and job.exception() is not None and wait):
                job = self._thresholds[rec.digest] = Future()
                threading.Thread(target=_run_into, args=(job, lfw_threshold, rec, self.settings.cache_root),
                                 name="cqa-threshold", daemon=True).start()  # daemon: never holds the process open
        if wait or job.done():
            return job.result()  # raises what the computation raised (no LFW: FileNotFoundError)
        return {"computing": f"{rec.name}'s LFW View 1 threshold is being computed (minutes the first time)"}

    def analyse(self, face: Face, other: Face | None = None, methods: tuple[str, ...] = ("gradcam",),
                model: str | None = None) -> FaceAnalysis:
        """``FaceAnalysis`` of a face and optional partner, by the model ``model`` names (a spec)."""
        return self.analyser(self.recognizer(model), face.source, other.source if other else None,
                             methods=tuple(methods), detector=detector_for(face.align),
                             other_detector=detector_for(other.align) if other else "same")

    def analyse_many(self, faces: list[Face], model: str | None = None) -> list[FaceAnalysis]:
        """Single-face analyses of many faces; the uncached ones run as one batch."""
        found = self.analyser.faces(self.recognizer(model), [f.source for f in faces],
                                    [detector_for(f.align) for f in faces])
        return [r[0] for r in found]

    def summaries(self, faces: list[Face], model: str | None = None) -> list[FaceSummary]:
        """Quality, overall quality, CAL and norm of many faces (batched; cached per face)."""
        return [FaceSummary.of(fa) for fa in self.analyse_many(faces, model)]

    def mask_effect(self, face: Face, masked: np.ndarray, alpha: np.ndarray | None,
                    model: str | None = None) -> MaskEffect:
        """How an edited (masked) version of a face changes each branch of a CQA-Face model."""
        rec = self.recognizer(model)
        if not rec.branches:
            raise ValueError(f"the quality deltas are QAN's: {rec.name} has no QAN")
        return mask_effect(rec.cqa, self.analyse(face, model=model).aligned, masked=masked, alpha=alpha)


def _run_into(job: Future, fn: Callable[..., Any], *args: Any) -> None:
    """``fn(*args)``'s result or error into ``job``."""
    try:
        job.set_result(fn(*args))
    except Exception as exc:  # noqa: BLE001 - the caller of job.result() gets it
        job.set_exception(exc)
