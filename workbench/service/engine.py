"""The model host: the session's model, other checkpoints, the aligner and one analysis cache.

An ``Engine`` is what the analysis service runs, and what a ``Session`` runs in-process when no
service is set (JupyterLab, notebooks, tests): the same code gives the same answers either way.
It implements the ``Backend`` protocol of ``workbench.session``, like ``ServiceClient``.

Model: ``Settings.checkpoint``, else the bundled default model, else an *untrained* light model
(seed 0), flagged so the header shows a banner (``cqa_core.checkpoint.resolve_model``). Other
checkpoints (side-by-side comparisons) are loaded once each and kept in a small LRU cache.
Alignment: MTCNN, stored on disk once per photo (``AlignmentStore``, keyed by the file's hash), or
the fixed LFW centre affine, per face (``Face.align``). Analyses are cached by (image hash,
alignment, weights). torch runs ``Settings.torch_threads`` intra-op threads: one face at a time on a
shared CPU, two contending threads made a forward pass ~20x slower.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cqa_core.checkpoint import load_model, resolve, resolve_model
from cqa_core.data.align import detector_for
from cqa_core.data.align_store import AlignmentStore
from cqa_core.explain.analysis import Analyser
from cqa_core.explain.quality import mask_effect
from cqa_core.explain.result import FaceAnalysis, MaskEffect
from cqa_core.settings import Settings
from workbench.service.wire import Face, FaceSummary

MAX_MODELS = 4
"""Checkpoints besides the session's kept loaded at once (least recently used goes first)."""


class Engine:
    """The model, its aligner and the analysis cache (``Backend`` of a Session, or the service's)."""

    remote = False

    def __init__(self, settings: Settings | None = None, maxsize: int = 192) -> None:
        settings = settings or Settings()
        torch.set_num_threads(settings.torch_threads)
        self.model, self.label, self.untrained = resolve_model(settings.checkpoint, allow_untrained=True)
        self.analyser = Analyser(maxsize=maxsize, store=AlignmentStore(cache=settings.cache_root))
        self.others: OrderedDict[str, Any] = OrderedDict()
        self.status: Callable[[str | None], None] = lambda text: None  # busy notes: nothing waits in-process

    def info(self) -> dict[str, Any]:
        c = self.model.config
        return {"label": self.label, "untrained": bool(self.untrained), "branches": int(c.branches),
                "description": f"{c.stem} stem, b={c.branches}, {'QAN' if c.qan else 'no QAN'}"}

    def model_for(self, checkpoint: str | None):
        """The session model, or another checkpoint (loaded once, LRU-cached by its resolved path)."""
        if not checkpoint:
            return self.model
        key = str(resolve(checkpoint))
        if key not in self.others:
            self.others[key] = load_model(key)
            while len(self.others) > MAX_MODELS:
                self.others.popitem(last=False)
        self.others.move_to_end(key)
        return self.others[key]

    def load(self, checkpoint: str) -> str:
        """Load (and check) another checkpoint now; the handle ``analyse(model=...)`` takes."""
        path = str(Path(checkpoint).expanduser())
        self.model_for(path)
        return path

    def analyse(self, face: Face, other: Face | None = None, methods: tuple[str, ...] = ("gradcam",),
                model: str | None = None) -> FaceAnalysis:
        """``FaceAnalysis`` of a face and optional partner."""
        return self.analyser(self.model_for(model), face.source, other.source if other else None,
                             methods=tuple(methods), detector=detector_for(face.align),
                             other_detector=detector_for(other.align) if other else "same")

    def analyse_many(self, faces: list[Face], model: str | None = None) -> list[FaceAnalysis]:
        """Single-face analyses of many faces; the uncached ones run as one batch."""
        found = self.analyser.faces(self.model_for(model), [f.source for f in faces],
                                    [detector_for(f.align) for f in faces])
        return [r[0] for r in found]

    def summaries(self, faces: list[Face], model: str | None = None) -> list[FaceSummary]:
        """Quality, overall quality, CAL and norm of many faces (batched; cached per face)."""
        return [FaceSummary.of(fa) for fa in self.analyse_many(faces, model)]

    def mask_effect(self, face: Face, masked: np.ndarray, alpha: np.ndarray | None) -> MaskEffect:
        """How an edited (masked) version of a face changes each branch."""
        return mask_effect(self.model, self.analyse(face).aligned, masked=masked, alpha=alpha)
