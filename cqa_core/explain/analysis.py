"""``analyse``: one call computing everything the workbench shows for a face (and a pair).

photo -> align (keep the affine) -> CQAOutput -> attention maps at 112 x 112 and on the photo,
quality, relation, embedding, diversity, region shares; with a second face: similarity, its exact
branch decomposition, leave-one-branch-out similarities and the chosen CAMs of both faces.

Results are cached (LRU) by the image content (sha1 of the file bytes or of the array) and the
model's identity (object id + parameter versions, so training in place invalidates the cache).
"""

from __future__ import annotations

import hashlib
import os
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch

from cqa_core.explain.cams import (
    BranchOverlay,
    branch_overlays,
    crop_support,
    gradcam_from_features,
    warp_to_photo,
)
from cqa_core.explain.common import (
    ExplainError,
    as_batch,
    eval_mode,
    model_device,
    to_numpy,
    upsample,
)
from cqa_core.explain.decomposition import decompose_outputs
from cqa_core.explain.diversity import diversity_of_maps
from cqa_core.explain.quality import region_shares

PAIR_METHODS = ("gradcam", "ig", "occlusion")  # plus any pytorch-grad-cam class name, e.g. "GradCAMPlusPlus"
MIN_SIDE = 16


class IGCheck(NamedTuple):
    """How well a face's integrated-gradients map adds up: sum(map) should equal ``gap``."""

    delta: float  # sum of attributions - gap
    gap: float  # cos(e(x), e_other) - cos(e(baseline), e_other)
    steps: int  # steps used
    converged: bool  # |delta| <= max(1 % of |gap|, 1e-4) before the step cap

    @property
    def relative(self) -> float:
        """|delta| / |gap| (inf when the gap is 0)."""
        return abs(self.delta) / abs(self.gap) if self.gap else float("inf")

    def describe(self) -> str:
        """'IG delta -0.0001 (0.3 % of gap -0.0211, 128 steps)', flagged when the cap was hit."""
        text = f"IG delta {self.delta:+.4f} ({100 * self.relative:.1f} % of gap {self.gap:+.4f}, {self.steps} steps)"
        return text if self.converged else text + " NOT converged: step cap hit"


class AnalysisError(ExplainError):
    """The face could not be analysed (bad file, bad array, unknown method); message in plain words."""


@dataclass
class FaceAnalysis:
    """What the workbench shows for one face (and, with a second face, for the pair)."""

    photo: np.ndarray  # (H, W, 3) uint8 as given
    aligned: np.ndarray  # (112, 112, 3) uint8
    affine: np.ndarray  # (2, 3) photo (x, y) -> aligned (x, y)
    align_method: str  # "identity" | "mtcnn" | "center"
    attention: np.ndarray  # (b, 112, 112) M_i upsampled, in [0, 1]
    attention_photo: np.ndarray  # (b, H, W) M_i warped onto the photo
    quality: np.ndarray  # (b,) S_hat_i
    relation: np.ndarray  # (b, b) A
    embedding: np.ndarray  # (512,)
    embedding_norm: float
    cal_matrix: np.ndarray  # (b, b) CAL pair terms (Eq. 2)
    gaussian: np.ndarray  # (b, b) Gaussian similarity before the hinge
    iou: np.ndarray  # (b, b) top-20 % region IoU
    entropy: np.ndarray  # (b,)
    coverage: np.ndarray  # (b,)
    cal: float  # mean off-diagonal CAL term = cal_loss of this face
    region_shares: dict[str, np.ndarray]  # region -> (b,)
    # pair fields (None without a second face)
    other: FaceAnalysis | None = None
    similarity: float | None = None
    decomposition: np.ndarray | None = None  # (b+1, b+1), sums to ``similarity``
    leave_one_out: np.ndarray | None = None  # (b,)
    maps: dict[str, np.ndarray] = field(default_factory=dict)  # method -> (112, 112) of this face
    maps_other: dict[str, np.ndarray] = field(default_factory=dict)  # method -> (112, 112) of the other
    ig: IGCheck | None = None  # completeness of this face's "ig" map (None until "ig" is computed)

    def overlays(self, on_photo: bool = True, alpha: float = 0.5) -> list[BranchOverlay]:
        """Per-branch heatmap overlays titled with their quality scores."""
        if on_photo:
            support = None if self.align_method == "identity" else crop_support(self.affine, self.photo.shape[1::-1])
            return branch_overlays(self.photo, self.attention_photo, self.quality, alpha, support)
        return branch_overlays(self.aligned, self.attention, self.quality, alpha)

    def map_on_photo(self, method: str) -> np.ndarray:
        """A pair map (112, 112) of this face warped onto the photo -> (H, W)."""
        h, w = self.photo.shape[:2]
        return warp_to_photo(self.maps[method], self.affine, (w, h))


# ---------------------------------------------------------------- inputs


def _load(image: Any) -> tuple[np.ndarray, str, Any]:
    """Image path / array / AlignedFace -> (RGB uint8 array, sha1 hex, AlignedFace or None)."""
    if hasattr(image, "image") and hasattr(image, "affine"):  # an AlignedFace: its crop is the photo
        arr = np.asarray(image.image)
        return arr, hashlib.sha1(arr.tobytes()).hexdigest(), image
    if isinstance(image, (str, os.PathLike)):
        path = Path(image).expanduser()
        if not path.is_file():
            raise AnalysisError(f"image file not found: {path}")
        from cqa_core.data.imageio import load_image

        data = path.read_bytes()
        return load_image(path), hashlib.sha1(data).hexdigest(), None
    if isinstance(image, np.ndarray):
        arr = image
        if arr.ndim == 2 and arr.dtype == np.uint8:
            arr = np.repeat(arr[:, :, None], 3, axis=2)  # grey -> RGB
        if arr.ndim != 3 or arr.shape[2] != 3 or arr.dtype != np.uint8:
            raise AnalysisError(f"expected an HxWx3 uint8 RGB image, got shape {arr.shape} dtype {arr.dtype}")
        key = hashlib.sha1(str(arr.shape).encode() + np.ascontiguousarray(arr).tobytes()).hexdigest()
        return arr, key, None
    raise AnalysisError(f"cannot analyse a {type(image).__name__}; give a file path or an HxWx3 uint8 array")


def _align(photo: np.ndarray, aligned: Any, detector: Any) -> tuple[np.ndarray, np.ndarray, str]:
    """(aligned 112x112 image, affine (2, 3), method) for a photo."""
    if aligned is not None:  # no photo travels with an AlignedFace: the crop stands in for it
        return np.asarray(aligned.image), np.eye(2, 3), "identity"
    h, w = photo.shape[:2]
    if min(h, w) < MIN_SIDE:
        raise AnalysisError(f"image is too small to hold a face ({w}x{h} pixels; need at least {MIN_SIDE})")
    from cqa_core.data import align

    try:
        face = align.align_image(photo, detector=detector, fallback="center")
    except RuntimeError:  # no detector installed: fall back to the fixed centre crop
        m = align.center_affine(w, h)
        return align.warp(photo, m), m, "center"
    return face.image, np.asarray(face.affine, np.float64), face.method


# ---------------------------------------------------------------- the analysis


def _model_key(model: torch.nn.Module) -> tuple:
    """Identity of a model's current weights: object id + in-place update counters."""
    versions = sum(t._version for t in model.state_dict(keep_vars=True).values())
    return id(model), versions


def _face(model: torch.nn.Module, photo: np.ndarray, aligned: np.ndarray, affine: np.ndarray, method: str) -> tuple[FaceAnalysis, Any]:
    """The single-face analysis and the raw CQAOutput (kept for the pair step)."""
    with torch.no_grad():
        out = model(as_batch(aligned, model_device(model)))
    att = to_numpy(upsample(out.attention_maps, aligned.shape[0]))[0]  # (b, 112, 112)
    h, w = photo.shape[:2]
    att_photo = att if method == "identity" else warp_to_photo(att, affine, (w, h))  # (b, H, W)
    div = diversity_of_maps(out.attention_maps)
    emb = to_numpy(out.embedding)[0]  # (512,)
    fa = FaceAnalysis(
        photo=photo, aligned=aligned, affine=affine, align_method=method, attention=att, attention_photo=att_photo,
        quality=to_numpy(out.quality)[0], relation=to_numpy(out.relation)[0], embedding=emb,
        embedding_norm=float(np.linalg.norm(emb)), cal_matrix=div.penalty[0], gaussian=div.gaussian[0],
        iou=div.iou[0], entropy=div.entropy[0], coverage=div.coverage[0], cal=float(div.cal[0]),
        region_shares={k: v[0] for k, v in region_shares(att[None]).items()},
    )
    return fa, out


def _pair_maps(model: torch.nn.Module, a: np.ndarray, b: np.ndarray, feats: torch.Tensor,
               methods: tuple[str, ...]) -> tuple[dict[str, np.ndarray], list[IGCheck] | None]:
    """method -> (2, 112, 112): row 0 explains face a against b, row 1 face b against a (one batch).

    ``feats`` (2, C, h, w) are the stem outputs of a and b, reused by the hook-free Grad-CAM.
    The second value is the IG completeness check of a and b (None when "ig" is not asked for).
    """
    from cqa_core.explain import attribution

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
    """``analyse`` with its own LRU cache (the module-level :func:`analyse` shares one)."""

    def __init__(self, maxsize: int = 64) -> None:
        self.maxsize = maxsize
        self._cache: OrderedDict[tuple, Any] = OrderedDict()

    def _cached(self, key: tuple, compute):
        if key in self._cache:
            self._cache.move_to_end(key)
            return self._cache[key]
        value = compute()
        self._cache[key] = value
        while len(self._cache) > self.maxsize:
            self._cache.popitem(last=False)
        return value

    def clear(self) -> None:
        self._cache.clear()

    def __len__(self) -> int:
        return len(self._cache)

    def face(self, model: torch.nn.Module, image: Any, detector: Any = None) -> tuple[FaceAnalysis, Any, str]:
        """(single-face analysis, raw CQAOutput, content digest) of one image, cached."""
        photo, digest, given = _load(image)
        key = ("face", digest, _model_key(model))

        def compute():
            aligned, affine, method = _align(photo, given, detector)
            with eval_mode(model):
                return (*_face(model, photo, aligned, affine, method), digest)

        return self._cached(key, compute)

    def __call__(self, model: torch.nn.Module, image: Any, other: Any = None, methods: tuple[str, ...] = ("gradcam",),
                 detector: Any = None) -> FaceAnalysis:
        """See :func:`analyse`."""
        fa, out_a, da = self.face(model, image, detector)
        if other is None:
            return fa
        fb, out_b, db = self.face(model, other, detector)
        key = ("pair", da, db, tuple(methods), _model_key(model))
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
            detector: Any = None) -> FaceAnalysis:
    """Analyse a face, or a pair of faces, with one call (cached).

    Args:
        model: CQAFace (run in eval mode; its mode is restored afterwards).
        image: a file path, an HxWx3 uint8 RGB array (a 112x112 array is taken as aligned) or an
            ``AlignedFace``.
        other: optional second face, same forms.
        methods: pair maps to compute for both faces: "gradcam" (hook-free), "ig", "occlusion" or
            a pytorch-grad-cam class name ("GradCAMPlusPlus", "ScoreCAM", ...).
        detector: face detector for ``cqa_core.data.align.align_image`` (None = its default).

    Returns:
        A :class:`FaceAnalysis`; pair fields are filled when ``other`` is given.

    Raises:
        AnalysisError / ImageError (both ``ValueError``): unreadable file, wrong array, unknown method.
    """
    return _DEFAULT(model, image, other, methods, detector)
