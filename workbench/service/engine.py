"""The model host: the session's model, other checkpoints, the aligner and one analysis cache.

An ``Engine`` is what the analysis service runs, and what a ``Session`` runs in-process when no
service is set (JupyterLab, notebooks, tests): the same code gives the same answers either way.
It implements the ``Backend`` protocol of ``workbench.session``, like ``ServiceClient``.

Model: ``Settings.checkpoint``, else the bundled default model, else an *untrained* light model
(seed 0), flagged so the header shows a banner (``cqa_core.checkpoint.resolve_model``). Other
recognizers (a CQA-Face checkpoint, an insightface ``.pth``, an ``.onnx``, ``dlib``: a "spec" of
``cqa_core.recognizers.load``) are loaded once each and kept in a small LRU cache; each gets its
own LFW threshold, computed once and kept on disk (``cqa_core.evaluation.threshold``).
Alignment: MTCNN, stored on disk once per gallery photo (``AlignmentStore``, keyed by the file's
hash), or the fixed LFW centre affine, per face (``Face.align``). Analyses are cached by (image
hash, alignment, weights). torch runs ``Settings.torch_threads`` intra-op threads: one face at a
time on a shared CPU, two contending threads made a forward pass ~20x slower.

Uploads are biometric data: a face that arrives as pixels (an upload, or an edit of one) rather
than as a gallery file is analysed in its viewer's own cache (:meth:`Engine.uploads_of`), never in
the shared one, and its alignment is never stored: nothing of it reaches the disk, no other viewer
can hit its cache entries, and :meth:`Engine.forget` drops them all when the viewer leaves (a viewer
silent for :data:`UPLOAD_IDLE_S` is forgotten too). The kernel sends the pixels with every call, so
a forgotten entry is only recomputed.
"""

from __future__ import annotations

import atexit
import os
import subprocess
import sys
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cqa_core.checkpoint import resolve_model
from cqa_core.data.align import detector_for
from cqa_core.data.align_store import AlignmentStore
from cqa_core.evaluation.threshold import PAIRS, lfw_threshold, threshold_path
from cqa_core.explain.analysis import Analyser
from cqa_core.explain.methods import available
from cqa_core.explain.quality import mask_effect
from cqa_core.explain.result import FaceAnalysis, MaskEffect, Photo
from cqa_core.recognizers.base import Recognizer
from cqa_core.recognizers.cqa import from_cqa
from cqa_core.recognizers.load import load_recognizer
from cqa_core.settings import Settings
from workbench.service.wire import Face, FaceSummary

MAX_MODELS = 4
"""Recognizers besides the session's kept loaded at once (least recently used goes first)."""
DEFAULT = "default"
"""The spec of the session's own model."""
UPLOADS_PER_VIEWER = 16
"""Analyses (faces and pairs) of one viewer's uploads kept at once (least recently used goes first)."""
MAX_VIEWERS = 64
"""Viewers whose uploads' analyses are kept at once (the longest silent one is forgotten first)."""
UPLOAD_IDLE_S = 1200.0
"""A viewer silent this long is forgotten (a kernel that died without saying bye; Voila culls an
idle kernel after 15 minutes, ``voila.json``)."""


def is_upload(face: Face | None) -> bool:
    """True for a face given as pixels (an upload or an edited face), False for a gallery file."""
    return face is not None and not isinstance(face.source, (str, os.PathLike, Photo))


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
        self.uploads: OrderedDict[str, tuple[Analyser, float]] = OrderedDict()  # viewer -> its cache, last use
        self.others: OrderedDict[str, Recognizer] = OrderedDict()
        self._thresholds: dict[str, subprocess.Popen] = {}  # weights digest -> its threshold's process
        atexit.register(self.close)
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
        path = threshold_path(rec, self.settings.cache_root)
        if path.is_file():
            return lfw_threshold(rec, self.settings.cache_root, path=path)
        if not (self.settings.lfw / PAIRS).is_file():
            return {"unavailable": f"no verdict: a model's own threshold is computed on LFW View 1, and this machine "
                                   f"has no {self.settings.lfw / PAIRS}"}
        if (rec is self.default and self.untrained) or rec.note.startswith("UNTRAINED"):
            return {"unavailable": "no verdict: an untrained model has no threshold worth computing"}
        with self._lock:
            proc = self._thresholds.get(rec.digest)
            if proc is None or (wait and proc.poll() not in (None, 0)):
                proc = self._thresholds[rec.digest] = self._start_threshold(spec_key(spec), path)
        if wait:
            proc.wait()
        if proc.poll() is None:
            return {"computing": f"{rec.name}'s LFW View 1 threshold is being computed (minutes the first time)"}
        if path.is_file():
            return lfw_threshold(rec, self.settings.cache_root, path=path)
        log_file = path.with_suffix(".log")
        log = log_file.read_text(errors="replace").strip().splitlines() if log_file.is_file() else []
        raise RuntimeError(f"{rec.name}'s LFW threshold could not be computed: {log[-1] if log else 'no output'}")

    def _start_threshold(self, key: str, path: Path) -> subprocess.Popen:
        """``python -m cqa_core.evaluation.threshold`` in its own process (minutes of aligning and
        embedding that never block this one and end with it: :meth:`close`); its log beside the JSON."""
        cmd = [sys.executable, "-m", "cqa_core.evaluation.threshold", key, "--out", str(path)]
        if key == DEFAULT and self.settings.checkpoint:
            cmd += ["--checkpoint", str(self.settings.checkpoint)]
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path.with_suffix(".log"), "wb") as log:
            return subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    env={**os.environ, **self.settings.to_env()})

    def close(self) -> None:
        """Stop threshold computations still running (a half-done one leaves no file behind)."""
        for proc in self._thresholds.values():
            if proc.poll() is None:
                proc.terminate()
                proc.wait(timeout=10)

    def uploads_of(self, viewer: str | None) -> Analyser:
        """The viewer's own analysis cache for its uploads: in memory only (no alignment store)."""
        key = viewer or ""
        now = time.monotonic()
        with self._lock:
            for k in [k for k, (_, seen) in self.uploads.items() if now - seen > UPLOAD_IDLE_S]:
                del self.uploads[k]
            analyser = self.uploads.pop(key, (None, 0.0))[0] or Analyser(maxsize=UPLOADS_PER_VIEWER, store=None)
            self.uploads[key] = (analyser, now)
            while len(self.uploads) > MAX_VIEWERS:
                self.uploads.popitem(last=False)
        return analyser

    def forget(self, viewer: str) -> bool:
        """Drop every analysis of the viewer's uploads (the viewer left); True when it had any."""
        with self._lock:
            return self.uploads.pop(viewer or "", None) is not None

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
        if not rec.branches:
            raise ValueError(f"the quality deltas are QAN's: {rec.name} has no QAN")
        return mask_effect(rec.cqa, self.analyse(face, model=model, viewer=viewer).aligned, masked=masked, alpha=alpha)


