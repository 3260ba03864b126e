"""The explainer registry: every map method by name, with what it needs from a recognizer.

    method = get("rise")                    # Method(name, label, needs, pair, about, fn)
    maps = method.fn(rec, chips, ctx)       # PairMaps: (2, S, S) for a pair (a vs b, b vs a)
    [m.name for m in available(rec)]        # what this recognizer can be explained with

``needs`` says what the method takes from a :class:`~cqa_core.recognizers.base.Recognizer`:

* ``embeddings``: only ``embed`` (perturbation methods: every recognizer, black-box ones too);
* ``gradients``: a differentiable module and a named spatial layer (white-box);
* ``branches``: CQA-Face's branch attention and QAN quality.

The analysis (``analysis.Analyser``), ``cqa explain --methods`` and the dashboard's map choices
all read this registry; a new method is one :func:`register` call.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import torch

from cqa_core.explain import attribution, blackbox
from cqa_core.explain.cams import gradcam_from_features
from cqa_core.explain.common import ExplainError
from cqa_core.explain.layercam import layer_gradcam
from cqa_core.explain.result import IGCheck
from cqa_core.recognizers.base import Recognizer

Progress = Callable[[int, int], None]


class Needs(str, enum.Enum):
    """What a method takes from a recognizer (see the module docstring)."""

    EMBEDDINGS = "embeddings"
    GRADIENTS = "gradients"
    BRANCHES = "branches"


class PairMaps(NamedTuple):
    """Maps of both faces of a pair: row 0 explains face a against b, row 1 face b against a."""

    maps: np.ndarray  # (2, S, S) float32
    checks: list[IGCheck] | None = None  # integrated gradients' completeness of a and b


@dataclass(frozen=True)
class Context:
    """What the analysis already computed that a method may reuse, where progress goes, and the
    perturbation budget (None: :func:`default_budget` of the recognizer)."""

    feats: torch.Tensor | None = None  # (2, C, h, w) CQA-Face stem outputs of a and b (hook-free Grad-CAM)
    progress: Progress | None = None
    grid: int | None = None  # occlusion windows per side
    masks: int | None = None  # RISE masks per face


class Budget(NamedTuple):
    grid: int  # occlusion: grid x grid windows, grid^2 + 1 embeddings a face
    masks: int  # RISE: masks + 1 embeddings a face


def default_budget(rec: Recognizer) -> Budget:
    """Perturbation budgets that keep a pair within seconds on 2 CPU cores.

    CQA-Face's light stem embeds a 112 chip in about 2 ms: 13 x 13 occlusion windows (16 x 16 px
    every 8) and 500 RISE masks. Any other recognizer (dlib: ~75 ms a chip; an iResNet-50: ~60 ms)
    gets 7 x 7 windows and 100 masks: about 200 embeddings a pair for RISE.
    """
    return Budget(13, 500) if rec.branches else Budget(7, 100)


def _budget(rec: Recognizer, ctx: Context) -> Budget:
    d = default_budget(rec)
    return Budget(ctx.grid or d.grid, ctx.masks or d.masks)


MapFn = Callable[[Recognizer, np.ndarray, Context], PairMaps]
RowFn = Callable[[Recognizer, np.ndarray, np.ndarray, Context], np.ndarray]  # (B, S, S) faces vs partners


@dataclass(frozen=True)
class Method:
    """A map method: ``fn(recognizer, chips (2, S, S, 3) uint8 [a, b], context) -> PairMaps``."""

    name: str
    label: str  # what the dashboard calls it
    needs: Needs
    about: str
    fn: MapFn | None = None  # None: a single-face map read from the analysis itself ("attention")
    pair: bool = True  # explains the pair similarity (False: one face, no partner)
    rows: RowFn | None = None  # perturbation methods: faces (B, S, S, 3) against partners, row by row

    def face_map(self, rec: Recognizer, chip_a: np.ndarray, chip_b: np.ndarray, ctx: Context) -> np.ndarray:
        """(S, S) map of face a only, against b (half a pair's cost for the perturbation methods)."""
        if self.rows is not None:
            return np.asarray(self.rows(rec, chip_a[None], chip_b[None], ctx), np.float32)[0]
        if self.fn is None:
            raise ExplainError(f"{self.name} is not a pair method")
        return self.fn(rec, np.stack([chip_a, chip_b]), ctx).maps[0]

    def supports(self, rec: Recognizer) -> bool:
        return rec.capabilities()[self.needs.value]

    def why_not(self, rec: Recognizer) -> str:
        """One line: why ``rec`` cannot be explained with this method ('' when it can)."""
        if self.supports(rec):
            return ""
        what = {Needs.GRADIENTS: "gradients through a torch module with a named spatial layer (a white-box model)",
                Needs.BRANCHES: "CQA-Face's branch attention"}[self.needs]
        return f"{self.label} needs {what}; {rec.name} is {rec.describe()}"


REGISTRY: dict[str, Method] = {}


def register(method: Method) -> Method:
    if method.name in REGISTRY:
        raise ValueError(f"explanation method {method.name!r} is registered twice")
    REGISTRY[method.name] = method
    return method


def get(name: str) -> Method:
    """The method called ``name``, or an ExplainError listing the known ones."""
    if name not in REGISTRY:
        raise ExplainError(f"unknown explanation method {name!r}; choose from {', '.join(REGISTRY)}")
    return REGISTRY[name]


def available(rec: Recognizer, pair: bool | None = None) -> list[Method]:
    """The methods ``rec`` supports (pair methods only, with ``pair=True``)."""
    return [m for m in REGISTRY.values() if m.supports(rec) and (pair is None or m.pair == pair)]


# ---------------------------------------------------------------- the methods


def _both(fn: Callable[[np.ndarray, np.ndarray], np.ndarray], chips: np.ndarray) -> np.ndarray:
    """Rows [a vs b, b vs a] of a row-wise explainer ``fn(faces, partners) -> (2, S, S)``."""
    return np.asarray(fn(chips, chips[::-1].copy()), np.float32)  # (2, S, S)


def _inputs(rec: Recognizer, chips: np.ndarray) -> torch.Tensor:
    return rec.preprocess.to_tensor(chips, rec.device)  # (2, 3, S, S)


def _grey(rec: Recognizer, like: torch.Tensor) -> torch.Tensor:
    """The mid-grey image (127.5 everywhere) in the recognizer's input units, shaped like ``like``."""
    s = rec.preprocess.size
    return rec.preprocess.to_tensor(np.full((1, s, s, 3), 127.5, np.float32), like.device).expand_as(like)


def gradcam(rec: Recognizer, chips: np.ndarray, ctx: Context) -> PairMaps:
    """Grad-CAM of cos(e_a, e_b): hook-free on CQA-Face's stem output, else at the named layer."""
    if rec.branches and ctx.feats is not None:
        return PairMaps(gradcam_from_features(rec.cqa, ctx.feats, ctx.feats.flip(0), chips.shape[1:3]).map_a)
    maps_a, maps_b = layer_gradcam(rec, chips[:1], chips[1:])  # (1, S, S) each
    return PairMaps(np.concatenate([maps_a, maps_b]))


def integrated_gradients(rec: Recognizer, chips: np.ndarray, ctx: Context) -> PairMaps:
    """captum IntegratedGradients from mid grey, run until it adds up to the score gap within 1 %."""
    x = _inputs(rec, chips)  # (2, 3, S, S)
    r = attribution.integrated_gradients(rec.module, x, x.flip(0), baseline=_grey(rec, x))
    checks = [IGCheck(float(r.delta[i]), float(r.gap[i]), int(r.steps[i]), bool(r.converged[i])) for i in range(2)]
    return PairMaps(r.map, checks)


def occlusion_rows(rec: Recognizer, faces: np.ndarray, partners: np.ndarray, ctx: Context) -> np.ndarray:
    """Drop in similarity when a grey window hides each place (captum Occlusion; grid x grid windows)."""
    return blackbox.occlusion(rec, faces, partners, grid=_budget(rec, ctx).grid, progress=ctx.progress)


def rise_rows(rec: Recognizer, faces: np.ndarray, partners: np.ndarray, ctx: Context) -> np.ndarray:
    """RISE: similarity-weighted mean of random masks (seeded)."""
    return blackbox.rise(rec, faces, partners, masks=_budget(rec, ctx).masks, progress=ctx.progress)


def pair_of_rows(rows: RowFn) -> MapFn:
    """The pair form [a vs b, b vs a] of a row-wise explainer."""
    return lambda rec, chips, ctx: PairMaps(_both(lambda a, b: rows(rec, a, b, ctx), chips))


def library_cam(method: str) -> MapFn:
    """A pytorch-grad-cam class on the pair similarity, at the recognizer's layer."""

    def fn(rec: Recognizer, chips: np.ndarray, ctx: Context) -> PairMaps:
        x = _inputs(rec, chips)  # (2, 3, S, S)
        return PairMaps(attribution.library_cam(rec.module, x, x.flip(0), method=method, layer=rec.layer))

    return fn


register(Method("attention", "attention", Needs.BRANCHES, "the branch attention maps M_i (their maximum)",
                pair=False))
register(Method("gradcam", "similarity Grad-CAM", Needs.GRADIENTS,
                "Grad-CAM of cos(e_a, e_b) on the last spatial feature map", gradcam))
register(Method("ig", "integrated gradients", Needs.GRADIENTS,
                "pixel attributions that add up to the similarity's gap from a grey face", integrated_gradients))
register(Method("occlusion", "occlusion", Needs.EMBEDDINGS,
                "drop in similarity when a grey window hides each place (any recognizer)",
                pair_of_rows(occlusion_rows), rows=occlusion_rows))
register(Method("rise", "RISE", Needs.EMBEDDINGS, "similarity-weighted mean of random masks (any recognizer)",
                pair_of_rows(rise_rows), rows=rise_rows))
for _cam in attribution.CAM_METHODS:
    register(Method(_cam, _cam, Needs.GRADIENTS, f"pytorch-grad-cam's {_cam} on cos(e_a, e_b)", library_cam(_cam)))
