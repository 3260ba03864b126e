"""The explainer registry: every map method by name, with what it needs from a recognizer.

    method = get("rise")                    # Method(name, label, needs, about, fn, ...)
    maps = method.fn(rec, chips, ctx)       # PairMaps: (2, S, S) for a pair (a vs b, b vs a)
    [m.name for m in available(rec)]        # what this recognizer can be explained with

A record says everything a viewer needs to offer the method: its ``label``, whether it explains
a pair or one face (``pair``), its ``cost`` (a slow one is announced while it runs), whether the
dashboard lists it (``listed``), and its side output: ``PairMaps.checks``, one
:class:`~cqa_core.explain.result.Check` per face (integrated gradients' completeness), which the
analysis keeps under the method's name. The dashboard lists methods in registration order.

``needs`` says what the method takes from a :class:`~cqa_core.recognizers.base.Recognizer`:

* ``embeddings``: only ``embed`` (perturbation methods: every recognizer, black-box ones too);
* ``gradients``: a differentiable module and a named spatial layer (white-box);
* ``branches``: CQA-Face's branch attention and QAN quality.

The analysis (``analysis.Analyser``), ``cqa explain --methods`` and the dashboard's map choices
all read this registry; a new method is one :func:`register` call. Packages outside this
repository add theirs through the entry-point group ``cqa.methods`` (a ``register()`` function that
calls :func:`register`), loaded the first time the registry is read (:func:`methods`).
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import torch

from cqa_core.explain import attribution, blackbox
from cqa_core.explain.common import ExplainError
from cqa_core.explain.corr_rise import corr_rise
from cqa_core.explain.layercam import layer_gradcam
from cqa_core.explain.result import Check
from cqa_core.explain.similarity_map import head_problem, similarity_map_chips
from cqa_core.explain.tensors import to_numpy, upsample
from cqa_core.explain.xssab import xssab_chips
from cqa_core.plugins import METHODS, load_plugins
from cqa_core.recognizers.base import Recognizer

Progress = Callable[[int, int], None]


class Needs(str, enum.Enum):
    """What a method takes from a recognizer (see the module docstring)."""

    EMBEDDINGS = "embeddings"
    GRADIENTS = "gradients"
    BRANCHES = "branches"


class Cost(str, enum.Enum):
    """How long a method takes for a pair on a CPU: "slow" ones (seconds or more) are announced."""

    FAST = "fast"
    SLOW = "slow"


class PairMaps(NamedTuple):
    """Maps of both faces of a pair (row 0 explains face a against b, row 1 face b against a), or of
    each face given to a single-face method, with the method's checks of each map."""

    maps: np.ndarray  # (2, S, S) float32 (one row per face given)
    checks: list[Check] | None = None  # one per row (integrated gradients' completeness)


@dataclass(frozen=True)
class Context:
    """Where progress goes, and the perturbation budget (None: :func:`default_budget` of the recognizer)."""

    progress: Progress | None = None
    grid: int | None = None  # occlusion windows per side
    masks: int | None = None  # RISE masks per face


class Budget(NamedTuple):
    grid: int  # occlusion: grid x grid windows, grid^2 + 1 embeddings a face
    masks: int  # RISE: masks + 1 embeddings a face


FAST_CHIP_MS = 10.0
"""A recognizer that embeds a chip within this many milliseconds gets the large budget."""


def default_budget(rec: Recognizer) -> Budget:
    """Perturbation budgets that keep a pair within seconds on 2 CPU cores, by ``rec.chip_ms``.

    A fast recognizer (CQA-Face's light stem embeds a 112 chip in about 2 ms) gets 13 x 13
    occlusion windows (16 x 16 px every 8) and 500 RISE masks. A slower one (dlib: ~75 ms a chip; an
    iResNet-50: ~60 ms) gets 7 x 7 windows and 100 masks: about 200 embeddings a pair for RISE.
    """
    return Budget(13, 500) if rec.chip_ms <= FAST_CHIP_MS else Budget(7, 100)


def _budget(rec: Recognizer, ctx: Context) -> Budget:
    d = default_budget(rec)
    return Budget(ctx.grid or d.grid, ctx.masks or d.masks)


MapFn = Callable[[Recognizer, np.ndarray, Context], PairMaps]
RowFn = Callable[[Recognizer, np.ndarray, np.ndarray, Context], np.ndarray]  # (B, S, S) faces vs partners


@dataclass(frozen=True)
class Method:
    """A map method: ``fn(recognizer, chips (2, S, S, 3) uint8 [a, b], context) -> PairMaps``.

    A single-face method (``pair=False``: "attention") takes the chips of the faces it explains,
    (N, S, S, 3), and returns one map per face.
    """

    name: str
    label: str  # what the dashboard calls it
    needs: Needs
    about: str
    fn: MapFn
    pair: bool = True  # explains the pair similarity (False: one face, no partner)
    rows: RowFn | None = None  # perturbation methods: faces (B, S, S, 3) against partners, row by row
    cost: Cost = Cost.FAST
    listed: bool = True  # offered among the dashboard's map choices (False: the CLI and Python only)
    signed: bool = False  # maps hold both signs: > 0 raises the similarity (or supports the match), < 0 lowers it
    unit: str = ""  # what one map value means, for its colour bar ("share of cosine", ...)
    check: Callable[[Recognizer], str] | None = None  # a further test of the recognizer: '' or why it cannot
    caveat: str = ""  # a measured warning shown beside the name ('' = none): see RANDOMISATION_CAVEATS

    def face_map(self, rec: Recognizer, chip_a: np.ndarray, chip_b: np.ndarray, ctx: Context) -> np.ndarray:
        """(S, S) map of face a only, against b (half a pair's cost for the perturbation methods)."""
        if self.rows is not None:
            return np.asarray(self.rows(rec, chip_a[None], chip_b[None], ctx), np.float32)[0]
        if not self.pair:
            return self.fn(rec, chip_a[None], ctx).maps[0]
        return self.fn(rec, np.stack([chip_a, chip_b]), ctx).maps[0]

    def record(self) -> dict[str, object]:
        """What a viewer needs to offer it (JSON): name, label, needs, pair, cost, listed, about, caveat."""
        return {"name": self.name, "label": self.label, "needs": self.needs.value, "pair": self.pair,
                "cost": self.cost.value, "listed": self.listed, "signed": self.signed, "unit": self.unit,
                "about": self.about, "caveat": self.caveat}

    def supports(self, rec: Recognizer) -> bool:
        return rec.capabilities()[self.needs.value] and not self._checked(rec)

    def _checked(self, rec: Recognizer) -> str:
        """The ``check``'s verdict on ``rec``, once per method and weights ('' without a check)."""
        if self.check is None:
            return ""
        key = (self.name, rec.cache_key())
        if key not in _CHECKED:
            _CHECKED[key] = self.check(rec)
        return _CHECKED[key]

    def why_not(self, rec: Recognizer) -> str:
        """One line: why ``rec`` cannot be explained with this method ('' when it can)."""
        if self.supports(rec):
            return ""
        if rec.capabilities()[self.needs.value]:
            return f"{self.label}: {self._checked(rec)}"
        what = {Needs.GRADIENTS: "gradients through a torch module with a named spatial layer (a white-box model)",
                Needs.BRANCHES: "CQA-Face's branch attention"}[self.needs]
        return f"{self.label} needs {what}; {rec.name} is {rec.describe()}"


REGISTRY: dict[str, Method] = {}
_CHECKED: dict[tuple[str, str], str] = {}
"""(method, weights key) -> its ``check``'s verdict ('' = fine): a check may cost a forward pass."""


def register(method: Method) -> Method:
    if method.name in REGISTRY:
        raise ValueError(f"explanation method {method.name!r} is registered twice")
    REGISTRY[method.name] = method
    return method


def methods() -> dict[str, Method]:
    """The registry, with the ``cqa.methods`` plug-ins loaded (once, on first use)."""
    load_plugins(METHODS)
    return REGISTRY


def get(name: str) -> Method:
    """The method called ``name``, or an ExplainError listing the known ones."""
    known = methods()
    if name not in known:
        raise ExplainError(f"unknown explanation method {name!r}; choose from {', '.join(known)}")
    return known[name]


def available(rec: Recognizer, pair: bool | None = None) -> list[Method]:
    """The methods ``rec`` supports (pair methods only, with ``pair=True``), in registration order."""
    return [m for m in methods().values() if m.supports(rec) and (pair is None or m.pair == pair)]


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


def attention(rec: Recognizer, chips: np.ndarray, ctx: Context) -> PairMaps:
    """Each face's branch attention maps M_i, upsampled to the chip, their maximum over branches."""
    _, out = rec.read(chips)
    return PairMaps(to_numpy(upsample(out.attention_maps, chips.shape[1])).max(axis=1))  # (N, S, S)


def gradcam(rec: Recognizer, chips: np.ndarray, ctx: Context) -> PairMaps:
    """Grad-CAM of cos(e_a, e_b) at the recognizer's spatial layer (CQA-Face: its stem output)."""
    maps_a, maps_b = layer_gradcam(rec, chips[:1], chips[1:])  # (1, S, S) each
    return PairMaps(np.concatenate([maps_a, maps_b]))


def ig_check(delta: float, gap: float, steps: int, converged: bool) -> Check:
    """IG's completeness in plain words: how much of the change in similarity the map accounts for."""
    share = 100.0 * (gap + delta) / gap if gap else float("nan")
    text = (f"the map accounts for {share:.1f}% of the change in similarity from a grey face "
            f"({gap:+.3f}), in {steps} steps")
    if not converged:
        text += "; NOT converged: the step cap was hit"
    return Check(converged, text, {"delta": delta, "gap": gap, "steps": float(steps)})


def integrated_gradients(rec: Recognizer, chips: np.ndarray, ctx: Context) -> PairMaps:
    """captum IntegratedGradients from mid grey, run until it adds up to the score gap within 1 %."""
    x = _inputs(rec, chips)  # (2, 3, S, S)
    r = attribution.integrated_gradients(rec.module, x, x.flip(0), baseline=_grey(rec, x))
    checks = [ig_check(float(r.delta[i]), float(r.gap[i]), int(r.steps[i]), bool(r.converged[i])) for i in range(2)]
    return PairMaps(r.map, checks)


def occlusion_rows(rec: Recognizer, faces: np.ndarray, partners: np.ndarray, ctx: Context) -> np.ndarray:
    """Drop in similarity when a grey window hides each place (captum Occlusion; grid x grid windows)."""
    return blackbox.occlusion(rec, faces, partners, grid=_budget(rec, ctx).grid, progress=ctx.progress)


def rise_rows(rec: Recognizer, faces: np.ndarray, partners: np.ndarray, ctx: Context) -> np.ndarray:
    """RISE: similarity-weighted mean of random masks (seeded)."""
    return blackbox.rise(rec, faces, partners, masks=_budget(rec, ctx).masks, progress=ctx.progress)


def corr_rise_rows(rec: Recognizer, faces: np.ndarray, partners: np.ndarray, ctx: Context) -> np.ndarray:
    """CorrRISE: Pearson correlation of the similarity with each pixel's mask value (RISE's masks)."""
    return corr_rise(rec, faces, partners, masks=_budget(rec, ctx).masks, progress=ctx.progress)


def similarity_map(rec: Recognizer, chips: np.ndarray, ctx: Context) -> PairMaps:
    """The exact spatial decomposition of cos(e_a, e_b): each place's term, in cosine units."""
    return PairMaps(similarity_map_chips(rec, chips).maps)


def xssab_map(rec: Recognizer, chips: np.ndarray, ctx: Context) -> PairMaps:
    """xSSAB: supporting minus opposing argument gradients, at the pixels."""
    return PairMaps(xssab_chips(rec, chips).maps)


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
                attention, pair=False, unit="attention weight"))
register(Method("gradcam", "similarity Grad-CAM", Needs.GRADIENTS,
                "Grad-CAM of cos(e_a, e_b) on the last spatial feature map", gradcam,
                unit="Grad-CAM weight (min-max scaled)"))
register(Method("ig", "integrated gradients", Needs.GRADIENTS,
                "pixel attributions that add up to the similarity's gap from a grey face", integrated_gradients,
                cost=Cost.SLOW, signed=True, unit="change in cosine from grey, per pixel"))
register(Method("occlusion", "occlusion", Needs.EMBEDDINGS,
                "drop in similarity when a grey window hides each place (any recognizer)",
                pair_of_rows(occlusion_rows), rows=occlusion_rows, cost=Cost.SLOW, signed=True,
                unit="drop in cosine when occluded"))
register(Method("rise", "RISE", Needs.EMBEDDINGS, "similarity-weighted mean of random masks (any recognizer)",
                pair_of_rows(rise_rows), rows=rise_rows, cost=Cost.SLOW, unit="similarity-weighted mask mean"))
register(Method("similarity-map", "similarity map", Needs.GRADIENTS,
                "exact split of cos(e_a, e_b) over the places of the spatial layer (Stylianou et al. 2019); "
                "needs a linear head after that layer", similarity_map, signed=True, unit="share of cosine",
                check=head_problem))
register(Method("xssab", "xSSAB", Needs.GRADIENTS,
                "gradients of the embedding dimensions that support and that oppose the match "
                "(Huber et al. 2024)", xssab_map, signed=True, unit="supporting - opposing gradient"))
register(Method("corr-rise", "CorrRISE", Needs.EMBEDDINGS,
                "correlation of the similarity with each place's presence under RISE's masks (Lu et al. 2024; "
                "any recognizer)", pair_of_rows(corr_rise_rows), rows=corr_rise_rows, cost=Cost.SLOW, signed=True,
                unit="correlation with the cosine"))
for _cam in attribution.CAM_METHODS:  # the library's classes beside our Grad-CAM: CLI and Python only
    if _cam != "GradCAM":  # the library's plain GradCAM is ours ("gradcam"), tested equal
        register(Method(_cam, _cam, Needs.GRADIENTS, f"pytorch-grad-cam's {_cam} on cos(e_a, e_b)",
                        library_cam(_cam), cost=Cost.SLOW if _cam in attribution.SLOW_CAMS else Cost.FAST,
                        listed=False))

SURVIVES_RANDOMISATION = 0.5
"""A map "survives" model randomisation when its Spearman rank correlation with the trained model's map
stays at or above this, on average along the cascade or with every layer randomised (Adebayo et al.,
NeurIPS 2018: such a map shows the input more than what the model learned)."""

RANDOMISATION_CAVEATS: dict[str, tuple[float, float]] = {
    "EigenCAM": (0.63, -0.12),
    "KPCA_CAM": (0.64, 0.45),
    "SegEigenCAM": (0.58, 0.54),
    "EigenGradCAM": (0.47, 0.51),
    "FEM": (0.58, 0.26),
}
"""Methods whose maps survive cascading randomisation of the bundled CQA-Face: Spearman (mean along the
walk, every layer randomised) measured by Quantus MPRT on the Explanation leaderboard
(docs/leaderboard.md, ``benchmarks/explanation_checks.py``). A measured constant, not computed at run
time; ``tests/test_method_caveats.py`` reruns the check on one of them."""


def randomisation_caveat(rho: tuple[float, float]) -> str:
    """The warning shown beside the name of a method whose maps survive randomisation (measured ``rho``)."""
    return (f"its maps barely depend on the model: as CQA-Face's layers are randomised from the top, they keep "
            f"a rank correlation of {rho[0]:.2f} on average with the trained model's maps ({rho[1]:.2f} with "
            "every layer randomised; Adebayo et al. 2018, see the Explanation leaderboard)")


for _name, _rho in RANDOMISATION_CAVEATS.items():
    REGISTRY[_name] = dataclasses.replace(REGISTRY[_name], caveat=randomisation_caveat(_rho))
