"""``analyse``: one call computing everything the workbench shows for a face (and a pair), any recognizer.

photo -> align (MTCNN landmarks, keep the affine) -> the recognizer's chip (``cut_chip``) ->
``Recognizer.read``: its embedding, and its readout where it has one (CQA-Face's branches: attention
maps at the chip size and on the photo, quality, relation, diversity, region shares, by
``explain.branches``). With a second face: the similarity, the maps of the asked methods (the
registry of ``explain.methods``) for both faces with their checks, and where the readout allows, the
exact branch decomposition and leave-one-branch-out. One path for every recognizer.

Results are cached (LRU, bounded in entries and in bytes) by the image content (sha1 of the file
bytes or of the array), how it was aligned (detector kind and settings) and the recognizer's
weights (``Recognizer.cache_key``: a model trained in place gets a new key).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from collections import Counter, OrderedDict
from pathlib import Path
from typing import Any

import numpy as np

from cqa_core.data import align
from cqa_core.data.align import AlignedFace
from cqa_core.data.align_store import align_key
from cqa_core.data.imageio import decode_image
from cqa_core.explain.branches import Placement, branch_analyses, branch_pair, of_face
from cqa_core.explain.common import ExplainError
from cqa_core.explain.methods import Context, Method, PairMaps, Progress
from cqa_core.explain.methods import get as get_method
from cqa_core.explain.result import Check, FaceAnalysis, PairAnalysis, Photo
from cqa_core.explain.tensors import eval_mode
from cqa_core.model.cqa_face import CQAFace
from cqa_core.recognizers.base import Recognizer, cut_chip
from cqa_core.recognizers.cqa import from_cqa

MIN_SIDE = 16


class AnalysisError(ExplainError):
    """The face could not be analysed (bad file, bad array, unknown method); message in plain words."""


# ---------------------------------------------------------------- inputs


def _load(image: Any) -> tuple[np.ndarray, str, Any]:
    """Image path / array / Photo / AlignedFace -> (RGB uint8 array, sha1 hex, AlignedFace or None)."""
    if isinstance(image, Photo):
        return image.pixels, image.digest, None
    if hasattr(image, "image") and hasattr(image, "affine"):  # an AlignedFace: its crop is the photo
        arr = np.asarray(image.image)
        return arr, hashlib.sha1(arr.tobytes()).hexdigest(), image
    if isinstance(image, (str, os.PathLike)):
        path = Path(image).expanduser()
        if not path.is_file():
            raise AnalysisError(f"image file not found: {path}")

        data = path.read_bytes()
        return decode_image(data, name=str(path)), hashlib.sha1(data).hexdigest(), None
    if isinstance(image, np.ndarray):
        arr = image
        if arr.ndim == 2 and arr.dtype == np.uint8:
            arr = np.repeat(arr[:, :, None], 3, axis=2)  # grey -> RGB
        if arr.ndim != 3 or arr.shape[2] != 3 or arr.dtype != np.uint8:
            raise AnalysisError(f"expected an HxWx3 uint8 RGB image, got shape {arr.shape} dtype {arr.dtype}")
        key = hashlib.sha1(str(arr.shape).encode() + np.ascontiguousarray(arr).tobytes()).hexdigest()
        return arr, key, None
    raise AnalysisError(f"cannot analyse a {type(image).__name__}; give a file path or an HxWx3 uint8 array")


def _align(photo: np.ndarray, digest: str, given: Any, detector: Any, store: Any) -> AlignedFace:
    """The photo's ``AlignedFace`` (112 x 112 crop, affine, landmarks); ``store`` an ``AlignmentStore`` or None."""
    if given is not None:  # no photo travels with an AlignedFace: the crop stands in for it
        crop = np.asarray(given.image)
        return AlignedFace(crop, np.eye(2, 3), None, crop.shape[1::-1], "identity", 1.0)
    h, w = photo.shape[:2]
    if min(h, w) < MIN_SIDE:
        raise AnalysisError(f"image is too small to hold a face ({w}x{h} pixels; need at least {MIN_SIDE})")
    try:
        if store is not None:
            return store.align(photo, digest, detector)
        return align.align_image(photo, detector=detector, fallback="center")
    except RuntimeError:  # no detector installed: fall back to the fixed centre crop
        m = align.center_affine(w, h)
        return AlignedFace(align.warp(photo, m), m, None, (w, h), "center", 0.0)


def _align_key(given: Any, detector: Any) -> str:
    return "identity" if given is not None else align_key(detector)


# ---------------------------------------------------------------- the analysis


def as_recognizer(model: Any) -> Recognizer:
    """A Recognizer as it is; a CQA-Face model as its Recognizer (:func:`recognizers.cqa.from_cqa`)."""
    if isinstance(model, Recognizer):
        return model
    if isinstance(model, CQAFace):
        return from_cqa(model)
    raise AnalysisError(f"cannot explain a {type(model).__name__}: give a CQA-Face model or a Recognizer "
                        "(cqa_core.recognizers.load_recognizer)")


def _faces(rec: Recognizer, items: list[tuple[np.ndarray, AlignedFace]]) -> list[tuple[FaceAnalysis, Any]]:
    """Single-face analyses of N faces in one batch, each with its readout output (None without a readout).

    ``items``: (photo, AlignedFace) per face; each recognizer sees its own chip of it (``cut_chip``).
    """
    cut = [cut_chip(photo, face, rec.preprocess) for photo, face in items]  # (chip (S, S, 3), affine (2, 3))
    chips = np.stack([c for c, _ in cut])  # (N, S, S, 3)
    emb, out = rec.read(chips)  # (N, D), readout output of N faces or None
    if out is None:
        branches, outs = [None] * len(items), [None] * len(items)
    else:
        same = [face.method == "identity" and rec.preprocess.is_arcface112 for _, face in items]
        branches = branch_analyses(out, chips.shape[1], [Placement(photo, m, s) for (photo, _), (_, m), s
                                                         in zip(items, cut, same, strict=True)])
        outs = [of_face(out, n) for n in range(len(items))]
    return [(FaceAnalysis(photo=photo, aligned=chips[n], affine=cut[n][1], align_method=face.method,
                          embedding=emb[n], embedding_norm=float(np.linalg.norm(emb[n])), model=rec.name,
                          kind=rec.kind, branches=branches[n]), outs[n])
            for n, (photo, face) in enumerate(items)]


def _known(name: str) -> Method:
    """The registry's method called ``name`` (an unknown one is a one-line AnalysisError)."""
    try:
        return get_method(name)
    except ExplainError as exc:
        raise AnalysisError(str(exc)) from None


def _method(rec: Recognizer, name: str) -> Method:
    """The registry's method called ``name``, checked against the recognizer (one-line AnalysisError)."""
    method = _known(name)
    if not method.supports(rec):
        raise AnalysisError(method.why_not(rec))
    return method


def _pair_maps(rec: Recognizer, chips: np.ndarray, methods: list[Method], ctx: Context
               ) -> tuple[dict[str, np.ndarray], dict[str, list[Check]]]:
    """method -> (2, S, S): row 0 explains face a against b, row 1 face b against a; and each one's checks."""
    maps: dict[str, np.ndarray] = {}
    checks: dict[str, list[Check]] = {}
    for method in methods:
        res: PairMaps = method.fn(rec, chips, ctx)
        maps[method.name] = res.maps
        if res.checks is not None:
            checks[method.name] = list(res.checks)
    return maps, checks


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b / max(float(np.linalg.norm(a) * np.linalg.norm(b)), 1e-12))


def nbytes(value: Any) -> int:
    """Bytes of the arrays an analysis holds (what the cache's byte bound counts)."""
    if isinstance(value, np.ndarray):
        return value.nbytes
    if isinstance(value, dict):
        return sum(nbytes(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return sum(nbytes(v) for v in value)
    if hasattr(value, "__dataclass_fields__"):
        return sum(nbytes(getattr(value, k)) for k in value.__dataclass_fields__)
    return 0


class Analyser:
    """``analyse`` with its own LRU cache (the module-level :func:`analyse` shares one).

    The cache key of a face is (content digest, alignment, weights): the same photo aligned by
    MTCNN and by the centre affine are two entries. The cache keeps at most ``maxsize`` entries and
    ``maxbytes`` bytes of arrays (least recently used go first). ``store`` (a
    ``cqa_core.data.align_store.AlignmentStore``) keeps MTCNN alignments on disk across processes.
    ``computed`` counts the faces this analyser actually ran (cache misses); ``runs`` counts them
    per face key, and ``batches`` per batch size.
    """

    def __init__(self, maxsize: int = 64, store: Any = None, maxbytes: int = 512 * 2**20) -> None:
        self.maxsize, self.maxbytes = maxsize, maxbytes
        self.store = store
        self.computed = 0
        self.runs: Counter[str] = Counter()
        self.batches: Counter[int] = Counter()
        self._cache: OrderedDict[tuple, Any] = OrderedDict()
        self._sizes: dict[tuple, int] = {}

    @property
    def bytes(self) -> int:
        """Bytes of arrays the cache holds now."""
        return sum(self._sizes.values())

    def _cached(self, key: tuple, compute):
        if key in self._cache:
            self._cache.move_to_end(key)
            return self._cache[key]
        value = compute()
        self._put(key, value)
        return value

    def _put(self, key: tuple, value: Any) -> None:
        self._cache[key] = value
        self._sizes[key] = nbytes(value)
        self._cache.move_to_end(key)
        while len(self._cache) > 1 and (len(self._cache) > self.maxsize or self.bytes > self.maxbytes):
            old, _ = self._cache.popitem(last=False)
            del self._sizes[old]

    def clear(self) -> None:
        self._cache.clear()
        self._sizes.clear()

    def __len__(self) -> int:
        return len(self._cache)

    def face(self, model: Any, image: Any, detector: Any = None) -> tuple[FaceAnalysis, Any, tuple]:
        """(single-face analysis, readout output or None, cache key of the face) of one image, cached."""
        return self.faces(model, [image], [detector])[0]

    def faces(self, model: Any, images: list[Any], detectors: list[Any] | None = None) -> list[tuple[FaceAnalysis, Any, tuple]]:
        """:meth:`face` of many images; the ones not cached run through the model in one batch."""
        rec = as_recognizer(model)
        detectors = detectors or [None] * len(images)
        mkey = rec.cache_key()
        loaded = [_load(im) for im in images]
        keys = [("face", digest, _align_key(given, det), mkey) for (_, digest, given), det in zip(loaded, detectors, strict=True)]
        todo = {k: i for i, k in enumerate(keys) if k not in self._cache}  # first image of each missing key
        if todo:
            items = []
            for i in todo.values():
                photo, digest, given = loaded[i]
                items.append((photo, _align(photo, digest, given, detectors[i], self.store)))
            with self._eval(rec):
                done = _faces(rec, items)
            self.computed += len(done)
            self.batches[len(done)] += 1
            for k, (fa, out) in zip(todo, done, strict=True):
                self.runs[f"{k[1]}/{k[2]}"] += 1
                self._put(k, (fa, out, k))
        result = []
        for k in keys:
            self._cache.move_to_end(k)
            result.append(self._cache[k])
        return result

    @staticmethod
    def _eval(rec: Recognizer):
        return eval_mode(rec.module) if rec.module is not None else contextlib.nullcontext()

    def _face_maps(self, rec: Recognizer, key: tuple, fa: FaceAnalysis, wanted: list[Method], ctx: Context) -> None:
        """The single-face methods' maps of a face, computed once into its cached analysis (``key``)."""
        todo = [m for m in wanted if m.name not in fa.maps]
        for method in todo:
            with self._eval(rec):
                fa.maps[method.name] = method.fn(rec, fa.aligned[None], ctx).maps[0]  # (S, S)
        if todo and key in self._cache:
            self._put(key, self._cache[key])  # its size grew

    def __call__(self, model: Any, image: Any, other: Any = None, methods: tuple[str, ...] = ("gradcam",),
                 detector: Any = None, other_detector: Any = "same",
                 progress: Progress | None = None) -> FaceAnalysis | PairAnalysis:
        """See :func:`analyse`."""
        rec = as_recognizer(model)
        known = [_known(name) for name in methods]
        single = [_method(rec, m.name) for m in known if not m.pair]
        ctx = Context(progress=progress)
        fa, out_a, ka = self.face(rec, image, detector)
        self._face_maps(rec, ka, fa, single, ctx)
        if other is None:
            return fa
        pair = [_method(rec, m.name) for m in known if m.pair]
        fb, out_b, kb = self.face(rec, other, detector if other_detector == "same" else other_detector)
        self._face_maps(rec, kb, fb, single, ctx)
        key = ("pair", ka, kb, tuple(m.name for m in pair), rec.cache_key())
        with self._eval(rec):
            return self._cached(key, lambda: self._pair(rec, fa, out_a, fb, out_b, pair, ctx))

    def _pair(self, rec: Recognizer, fa: FaceAnalysis, out_a: Any, fb: FaceAnalysis, out_b: Any,
              methods: list[Method], ctx: Context) -> PairAnalysis:
        maps, checks = _pair_maps(rec, np.stack([fa.aligned, fb.aligned]), methods, ctx)
        branches = branch_pair(rec.readout, out_a, out_b) if out_a is not None else None
        return PairAnalysis(a=fa, b=fb, similarity=_cosine(fa.embedding, fb.embedding), maps=maps, checks=checks,
                            branches=branches)


_DEFAULT = Analyser()


def analyse(model: Any, image: Any, other: Any = None, methods: tuple[str, ...] = ("gradcam",),
            detector: Any = None, other_detector: Any = "same",
            progress: Progress | None = None) -> FaceAnalysis | PairAnalysis:
    """Analyse a face, or a pair of faces, with one call (cached).

    Args:
        model: a CQAFace (run in eval mode; its mode is restored afterwards) or any ``Recognizer``
            (``cqa_core.recognizers.load_recognizer``). Every recognizer's analysis has its embedding,
            similarity and maps; one with a readout (CQA-Face) also has ``branches``.
        image: a file path, an HxWx3 uint8 RGB array (a 112x112 array is taken as aligned) or an
            ``AlignedFace``.
        other: optional second face, same forms.
        methods: maps to compute, names of ``cqa_core.explain.methods`` ("gradcam", "ig", "occlusion",
            "rise", "attention", a pytorch-grad-cam class name such as "GradCAMPlusPlus"); each must be
            supported by the recognizer (``methods.available``). Pair methods are computed when
            ``other`` is given; single-face ones ("attention") for every face, into ``FaceAnalysis.maps``.
        detector: face detector for ``cqa_core.data.align.align_image`` (None = its default, MTCNN;
            ``cqa_core.data.align.CenterDetector()`` = the fixed LFW centre affine). It is part
            of the cache key.
        other_detector: the second face's detector ("same" = ``detector``).
        progress: ``progress(done, total)`` of the slow perturbation methods (occlusion, RISE).

    Returns:
        A :class:`FaceAnalysis` of ``image``, or with ``other`` a :class:`PairAnalysis` of both.

    Raises:
        AnalysisError / ImageError (both ``ValueError``): unreadable file, wrong array, unknown method.
    """
    return _DEFAULT(model, image, other, methods, detector, other_detector, progress)
