"""``analyse``: one call computing everything the workbench shows for a face (and a pair).

photo -> align (keep the affine) -> CQAOutput -> attention maps at 112 x 112 and on the photo,
quality, relation, embedding, diversity, region shares; with a second face: similarity, its exact
branch decomposition, leave-one-branch-out similarities and the chosen CAMs of both faces.

Results are cached (LRU) by the image content (sha1 of the file bytes or of the array), how it
was aligned (detector kind and settings) and the model's identity (object id + parameter
versions, so training in place invalidates the cache).
"""

from __future__ import annotations

import hashlib
import os
from collections import Counter, OrderedDict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cqa_core.data import align
from cqa_core.data.align_store import align_key
from cqa_core.data.imageio import decode_image
from cqa_core.explain import attribution
from cqa_core.explain.cams import gradcam_from_features, warp_to_photo
from cqa_core.explain.common import ExplainError
from cqa_core.explain.decomposition import decompose_outputs
from cqa_core.explain.diversity import diversity_of_maps
from cqa_core.explain.quality import region_shares
from cqa_core.explain.result import FaceAnalysis, IGCheck, Photo
from cqa_core.explain.tensors import as_batch, eval_mode, model_device, to_numpy, upsample

PAIR_METHODS = ("gradcam", "ig", "occlusion")  # plus any pytorch-grad-cam class name, e.g. "GradCAMPlusPlus"
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


def _align(photo: np.ndarray, digest: str, aligned: Any, detector: Any, store: Any) -> tuple[np.ndarray, np.ndarray, str]:
    """(aligned 112x112 image, affine (2, 3), method) for a photo; ``store`` an ``AlignmentStore`` or None."""
    if aligned is not None:  # no photo travels with an AlignedFace: the crop stands in for it
        return np.asarray(aligned.image), np.eye(2, 3), "identity"
    h, w = photo.shape[:2]
    if min(h, w) < MIN_SIDE:
        raise AnalysisError(f"image is too small to hold a face ({w}x{h} pixels; need at least {MIN_SIDE})")

    try:
        if store is not None:
            face = store.align(photo, digest, detector)
        else:
            face = align.align_image(photo, detector=detector, fallback="center")
    except RuntimeError:  # no detector installed: fall back to the fixed centre crop
        m = align.center_affine(w, h)
        return align.warp(photo, m), m, "center"
    return face.image, np.asarray(face.affine, np.float64), face.method


def _align_key(aligned: Any, detector: Any) -> str:
    return "identity" if aligned is not None else align_key(detector)


# ---------------------------------------------------------------- the analysis


def _model_key(model: torch.nn.Module) -> tuple:
    """Identity of a model's current weights: object id + in-place update counters."""
    versions = sum(t._version for t in model.state_dict(keep_vars=True).values())
    return id(model), versions


def _faces(model: torch.nn.Module, items: list[tuple[np.ndarray, np.ndarray, np.ndarray, str]]) -> list[tuple[FaceAnalysis, Any]]:
    """Single-face analyses of N aligned faces in one forward pass, each with its raw CQAOutput.

    ``items``: (photo, aligned (112, 112, 3), affine (2, 3), method) per face.
    """
    with torch.no_grad():
        out = model(as_batch(np.stack([it[1] for it in items]), model_device(model)))
    att = to_numpy(upsample(out.attention_maps, items[0][1].shape[0]))  # (N, b, 112, 112)
    div = diversity_of_maps(out.attention_maps)
    shares = region_shares(att)  # region -> (N, b)
    emb, quality, relation = to_numpy(out.embedding), to_numpy(out.quality), to_numpy(out.relation)  # (N, 512), (N, b), (N, b, b)
    result = []
    for n, (photo, aligned, affine, method) in enumerate(items):
        h, w = photo.shape[:2]
        att_photo = att[n] if method == "identity" else warp_to_photo(att[n], affine, (w, h))  # (b, H, W)
        fa = FaceAnalysis(
            photo=photo, aligned=aligned, affine=affine, align_method=method, attention=att[n],
            attention_photo=att_photo, quality=quality[n], relation=relation[n], embedding=emb[n],
            embedding_norm=float(np.linalg.norm(emb[n])), cal_matrix=div.penalty[n], gaussian=div.gaussian[n],
            iou=div.iou[n], entropy=div.entropy[n], coverage=div.coverage[n], cal=float(div.cal[n]),
            region_shares={k: v[n] for k, v in shares.items()},
        )
        result.append((fa, type(out)(*(t[n:n + 1] for t in out))))  # CQAOutput of face n, batch of 1
    return result


def _pair_maps(model: torch.nn.Module, a: np.ndarray, b: np.ndarray, feats: torch.Tensor,
               methods: tuple[str, ...]) -> tuple[dict[str, np.ndarray], list[IGCheck] | None]:
    """method -> (2, 112, 112): row 0 explains face a against b, row 1 face b against a (one batch).

    ``feats`` (2, C, h, w) are the stem outputs of a and b, reused by the hook-free Grad-CAM.
    The second value is the IG completeness check of a and b (None when "ig" is not asked for).
    """
    x, y = np.stack([a, b]), np.stack([b, a])  # (2, 112, 112, 3) each
    out: dict[str, np.ndarray] = {}
    checks = None
    for m in methods:
        if m == "gradcam":
            out[m] = gradcam_from_features(model, feats, feats.flip(0), a.shape[:2]).map_a
        elif m == "ig":
            r = attribution.integrated_gradients(model, x, y)
            out[m] = r.map
            checks = [IGCheck(float(r.delta[i]), float(r.gap[i]), int(r.steps[i]), bool(r.converged[i]))
                      for i in range(2)]
        elif m == "occlusion":
            out[m] = attribution.occlusion(model, x, y).map
        elif m in attribution.CAM_METHODS:
            out[m] = attribution.library_cam(model, x, y, method=m)
        else:
            known = ", ".join(PAIR_METHODS + attribution.CAM_METHODS)
            raise AnalysisError(f"unknown explanation method {m!r}; choose from {known}")
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

    def face(self, model: torch.nn.Module, image: Any, detector: Any = None) -> tuple[FaceAnalysis, Any, str]:
        """(single-face analysis, raw CQAOutput, cache key of the face) of one image, cached."""
        return self.faces(model, [image], [detector])[0]

    def faces(self, model: torch.nn.Module, images: list[Any], detectors: list[Any] | None = None) -> list[tuple[FaceAnalysis, Any, str]]:
        """:meth:`face` of many images; the ones not cached run through the model in one batch."""
        detectors = detectors or [None] * len(images)
        mkey = _model_key(model)
        loaded = [_load(im) for im in images]
        keys = [("face", digest, _align_key(given, det), mkey) for (_, digest, given), det in zip(loaded, detectors, strict=True)]
        todo = {k: i for i, k in enumerate(keys) if k not in self._cache}  # first image of each missing key
        if todo:
            items = []
            for i in todo.values():
                photo, digest, given = loaded[i]
                items.append((photo, *_align(photo, digest, given, detectors[i], self.store)))
            with eval_mode(model):
                done = _faces(model, items)
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

    def __call__(self, model: torch.nn.Module, image: Any, other: Any = None, methods: tuple[str, ...] = ("gradcam",),
                 detector: Any = None, other_detector: Any = "same") -> FaceAnalysis:
        """See :func:`analyse`."""
        fa, out_a, ka = self.face(model, image, detector)
        if other is None:
            return fa
        fb, out_b, kb = self.face(model, other, detector if other_detector == "same" else other_detector)
        key = ("pair", ka, kb, tuple(methods), _model_key(model))
        with eval_mode(model):
            return self._cached(key, lambda: self._pair(model, fa, out_a, fb, out_b, tuple(methods)))

    def _pair(self, model, fa: FaceAnalysis, out_a, fb: FaceAnalysis, out_b, methods: tuple[str, ...]) -> FaceAnalysis:
        dec = decompose_outputs(model, out_a, out_b)
        feats = torch.cat([out_a.feature_map, out_b.feature_map])  # (2, C, h, w)
        maps, ig = _pair_maps(model, fa.aligned, fb.aligned, feats, methods)
        other = FaceAnalysis(**{**fb.__dict__, "maps": {k: v[1] for k, v in maps.items()},
                                "ig": ig[1] if ig else None})
        return FaceAnalysis(**{
            **fa.__dict__, "other": other, "similarity": float(dec.similarity[0]), "decomposition": dec.matrix[0],
            "leave_one_out": dec.leave_one_out[0], "maps": {k: v[0] for k, v in maps.items()},
            "maps_other": {k: v[1] for k, v in maps.items()}, "ig": ig[0] if ig else None,
        })


_DEFAULT = Analyser()


def analyse(model: torch.nn.Module, image: Any, other: Any = None, methods: tuple[str, ...] = ("gradcam",),
            detector: Any = None, other_detector: Any = "same") -> FaceAnalysis:
    """Analyse a face, or a pair of faces, with one call (cached).

    Args:
        model: CQAFace (run in eval mode; its mode is restored afterwards).
        image: a file path, an HxWx3 uint8 RGB array (a 112x112 array is taken as aligned) or an
            ``AlignedFace``.
        other: optional second face, same forms.
        methods: pair maps to compute for both faces: "gradcam" (hook-free), "ig", "occlusion" or
            a pytorch-grad-cam class name ("GradCAMPlusPlus", "ScoreCAM", ...).
        detector: face detector for ``cqa_core.data.align.align_image`` (None = its default, MTCNN;
            ``cqa_core.data.align.CenterDetector()`` = the fixed LFW centre affine). It is part
            of the cache key.
        other_detector: the second face's detector ("same" = ``detector``).

    Returns:
        A :class:`FaceAnalysis`; pair fields are filled when ``other`` is given.

    Raises:
        AnalysisError / ImageError (both ``ValueError``): unreadable file, wrong array, unknown method.
    """
    return _DEFAULT(model, image, other, methods, detector, other_detector)
