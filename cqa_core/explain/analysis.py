"""``analyse``: one call computing everything the workbench shows for a face (and a pair), any recognizer.

photo -> align (MTCNN landmarks, keep the affine) -> the recognizer's chip (``cut_chip``) -> its
output. For CQA-Face: attention maps at 112 x 112 and on the photo, quality, relation, embedding,
diversity, region shares, and with a second face the similarity, its exact branch decomposition and
leave-one-branch-out similarities. For any other recognizer: its embedding and the similarity.
With a second face, the maps of the asked methods (the registry of ``explain.methods``) for both.

Results are cached (LRU) by the image content (sha1 of the file bytes or of the array), how it
was aligned (detector kind and settings) and the recognizer's identity (for CQA-Face the model
object and its parameter versions, so training in place invalidates the cache).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from collections import Counter, OrderedDict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cqa_core.data import align
from cqa_core.data.align import AlignedFace
from cqa_core.data.align_store import align_key
from cqa_core.data.imageio import decode_image
from cqa_core.explain.common import ExplainError
from cqa_core.explain.decomposition import decompose_outputs
from cqa_core.explain.diversity import diversity_of_maps
from cqa_core.explain.methods import Context, Progress
from cqa_core.explain.methods import get as get_method
from cqa_core.explain.quality import region_shares
from cqa_core.explain.render import warp_to_photo
from cqa_core.explain.result import FaceAnalysis, IGCheck, Photo
from cqa_core.explain.tensors import as_batch, eval_mode, model_device, to_numpy, upsample
from cqa_core.model.cqa_face import CQAFace
from cqa_core.recognizers.base import Recognizer, cut_chip
from cqa_core.recognizers.cqa import from_cqa, weights_key

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


def _model_key(rec: Recognizer) -> str:
    """Identity of a recognizer's current weights (a CQA-Face trained in place gets a new one)."""
    return weights_key(rec.cqa) if rec.branches else rec.digest


def _on_photo(maps: np.ndarray, face: AlignedFace, affine: np.ndarray, photo: np.ndarray, chip_is_photo: bool) -> np.ndarray:
    """(k, S, S) chip maps -> (k, H, W) on the photo (as they are when the chip is the photo itself)."""
    h, w = photo.shape[:2]
    return maps if chip_is_photo else warp_to_photo(maps, affine, (w, h))


def _faces(rec: Recognizer, items: list[tuple[np.ndarray, AlignedFace]]) -> list[tuple[FaceAnalysis, Any]]:
    """Single-face analyses of N faces in one batch, each with its raw CQAOutput (None for other recognizers).

    ``items``: (photo, AlignedFace) per face; each recognizer sees its own chip of it (``cut_chip``).
    """
    cut = [cut_chip(photo, face, rec.preprocess) for photo, face in items]  # (chip (S, S, 3), affine (2, 3))
    chips = np.stack([c for c, _ in cut])  # (N, S, S, 3)
    same = [face.method == "identity" and rec.preprocess.is_arcface112 for _, face in items]
    if not rec.branches:
        emb = rec.embed(chips)  # (N, D)
        return [(FaceAnalysis(photo=photo, aligned=chips[n], affine=cut[n][1], align_method=face.method,
                              embedding=emb[n], embedding_norm=float(np.linalg.norm(emb[n])),
                              model=rec.name, kind=rec.kind), None)
                for n, (photo, face) in enumerate(items)]
    model = rec.cqa
    with torch.no_grad():
        out = model(as_batch(chips, model_device(model)))
    att = to_numpy(upsample(out.attention_maps, chips.shape[1]))  # (N, b, 112, 112)
    div = diversity_of_maps(out.attention_maps)
    shares = region_shares(att)  # region -> (N, b)
    emb, quality, relation = to_numpy(out.embedding), to_numpy(out.quality), to_numpy(out.relation)  # (N, 512), (N, b), (N, b, b)
    result = []
    for n, (photo, face) in enumerate(items):
        fa = FaceAnalysis(
            photo=photo, aligned=chips[n], affine=cut[n][1], align_method=face.method, attention=att[n],
            attention_photo=_on_photo(att[n], face, cut[n][1], photo, same[n]), quality=quality[n],
            relation=relation[n], embedding=emb[n], embedding_norm=float(np.linalg.norm(emb[n])),
            cal_matrix=div.penalty[n], gaussian=div.gaussian[n], iou=div.iou[n], entropy=div.entropy[n],
            coverage=div.coverage[n], cal=float(div.cal[n]), region_shares={k: v[n] for k, v in shares.items()},
            model=rec.name, kind=rec.kind,
        )
        result.append((fa, type(out)(*(t[n:n + 1] for t in out))))  # CQAOutput of face n, batch of 1
    return result


def _pair_maps(rec: Recognizer, chips: np.ndarray, methods: tuple[str, ...], ctx: Context
               ) -> tuple[dict[str, np.ndarray], list[IGCheck] | None]:
    """method -> (2, S, S): row 0 explains face a against b, row 1 face b against a (the registry's methods).

    The second value is the IG completeness check of a and b (None when "ig" is not asked for).
    """
    out: dict[str, np.ndarray] = {}
    checks = None
    for name in methods:
        try:
            method = get_method(name)
        except ExplainError as exc:
            raise AnalysisError(str(exc)) from None
        if not method.pair:
            raise AnalysisError(f"{name} is a map of one face, not of a pair: read it from the face's analysis")
        if not method.supports(rec):
            raise AnalysisError(method.why_not(rec))
        res = method.fn(rec, chips, ctx)
        out[name] = res.maps
        checks = res.checks if res.checks is not None else checks
    return out, checks


class Analyser:
    """``analyse`` with its own LRU cache (the module-level :func:`analyse` shares one).

    The cache key of a face is (content digest, alignment, weights): the same photo aligned by
    MTCNN and by the centre affine are two entries. ``store`` (a
    ``cqa_core.data.align_store.AlignmentStore``) keeps MTCNN alignments on disk across processes.
    ``computed`` counts the faces this analyser actually ran (cache misses); ``runs`` counts them
    per face key, and ``batches`` per batch size.
    """

    def __init__(self, maxsize: int = 64, store: Any = None) -> None:
        self.maxsize = maxsize
        self.store = store
        self.computed = 0
        self.runs: Counter[str] = Counter()
        self.batches: Counter[int] = Counter()
        self._cache: OrderedDict[tuple, Any] = OrderedDict()

    def _cached(self, key: tuple, compute):
        if key in self._cache:
            self._cache.move_to_end(key)
            return self._cache[key]
        value = compute()
        self._put(key, value)
        return value

    def _put(self, key: tuple, value: Any) -> None:
        self._cache[key] = value
        self._cache.move_to_end(key)
        while len(self._cache) > self.maxsize:
            self._cache.popitem(last=False)

    def clear(self) -> None:
        self._cache.clear()

    def __len__(self) -> int:
        return len(self._cache)

    def face(self, model: Any, image: Any, detector: Any = None) -> tuple[FaceAnalysis, Any, str]:
        """(single-face analysis, raw CQAOutput or None, cache key of the face) of one image, cached."""
        return self.faces(model, [image], [detector])[0]

    def faces(self, model: Any, images: list[Any], detectors: list[Any] | None = None) -> list[tuple[FaceAnalysis, Any, str]]:
        """:meth:`face` of many images; the ones not cached run through the model in one batch."""
        rec = as_recognizer(model)
        detectors = detectors or [None] * len(images)
        mkey = _model_key(rec)
        loaded = [_load(im) for im in images]
        keys = [("face", digest, _align_key(given, det), mkey) for (_, digest, given), det in zip(loaded, detectors, strict=True)]
        todo = {k: i for i, k in enumerate(keys) if k not in self._cache}  # first image of each missing key
        if todo:
            items = []
            for i in todo.values():
                photo, digest, given = loaded[i]
                items.append((photo, _align(photo, digest, given, detectors[i], self.store)))
            with eval_mode(rec.module) if rec.module is not None else contextlib.nullcontext():
                done = _faces(rec, items)
            self.computed += len(done)
            self.batches[len(done)] += 1
            for k, (fa, out) in zip(todo, done, strict=True):
                self.runs[f"{k[1]}/{k[2]}"] += 1
                self._put(k, (fa, out, "/".join(map(str, k[1:3]))))
        result = []
        for k in keys:
            self._cache.move_to_end(k)
            result.append(self._cache[k])
        return result

    def __call__(self, model: Any, image: Any, other: Any = None, methods: tuple[str, ...] = ("gradcam",),
                 detector: Any = None, other_detector: Any = "same", progress: Progress | None = None) -> FaceAnalysis:
        """See :func:`analyse`."""
        rec = as_recognizer(model)
        fa, out_a, ka = self.face(rec, image, detector)
        if other is None:
            return fa
        fb, out_b, kb = self.face(rec, other, detector if other_detector == "same" else other_detector)
        key = ("pair", ka, kb, tuple(methods), _model_key(rec))
        with eval_mode(rec.module) if rec.module is not None else contextlib.nullcontext():
            return self._cached(key, lambda: self._pair(rec, fa, out_a, fb, out_b, tuple(methods), progress))

    def _pair(self, rec: Recognizer, fa: FaceAnalysis, out_a: Any, fb: FaceAnalysis, out_b: Any,
              methods: tuple[str, ...], progress: Progress | None) -> FaceAnalysis:
        pair: dict[str, Any] = {}
        feats = None
        if rec.branches:  # the exact branch decomposition of the cosine
            dec = decompose_outputs(rec.cqa, out_a, out_b)
            feats = torch.cat([out_a.feature_map, out_b.feature_map])  # (2, C, h, w)
            pair = {"similarity": float(dec.similarity[0]), "decomposition": dec.matrix[0],
                    "leave_one_out": dec.leave_one_out[0]}
        else:
            ea, eb = fa.embedding, fb.embedding  # (D,) each
            pair = {"similarity": float(ea @ eb / max(np.linalg.norm(ea) * np.linalg.norm(eb), 1e-12))}
        maps, ig = _pair_maps(rec, np.stack([fa.aligned, fb.aligned]), methods, Context(feats, progress))
        other = FaceAnalysis(**{**fb.__dict__, "maps": {k: v[1] for k, v in maps.items()},
                                "ig": ig[1] if ig else None})
        return FaceAnalysis(**{
            **fa.__dict__, **pair, "other": other, "maps": {k: v[0] for k, v in maps.items()},
            "maps_other": {k: v[1] for k, v in maps.items()}, "ig": ig[0] if ig else None,
        })


_DEFAULT = Analyser()


def analyse(model: Any, image: Any, other: Any = None, methods: tuple[str, ...] = ("gradcam",),
            detector: Any = None, other_detector: Any = "same", progress: Progress | None = None) -> FaceAnalysis:
    """Analyse a face, or a pair of faces, with one call (cached).

    Args:
        model: a CQAFace (run in eval mode; its mode is restored afterwards) or any ``Recognizer``
            (``cqa_core.recognizers.load_recognizer``): a plain recognizer's analysis has its
            embedding, similarity and maps; the branch fields (attention, quality, CAL) stay None.
        image: a file path, an HxWx3 uint8 RGB array (a 112x112 array is taken as aligned) or an
            ``AlignedFace``.
        other: optional second face, same forms.
        methods: pair maps to compute for both faces: names of ``cqa_core.explain.methods`` ("gradcam",
            "ig", "occlusion", "rise", a pytorch-grad-cam class name such as "GradCAMPlusPlus"); each
            must be supported by the recognizer (``methods.available``).
        detector: face detector for ``cqa_core.data.align.align_image`` (None = its default, MTCNN;
            ``cqa_core.data.align.CenterDetector()`` = the fixed LFW centre affine). It is part
            of the cache key.
        other_detector: the second face's detector ("same" = ``detector``).
        progress: ``progress(done, total)`` of the slow perturbation methods (occlusion, RISE).

    Returns:
        A :class:`FaceAnalysis`; pair fields are filled when ``other`` is given.

    Raises:
        AnalysisError / ImageError (both ``ValueError``): unreadable file, wrong array, unknown method.
    """
    return _DEFAULT(model, image, other, methods, detector, other_detector, progress)
