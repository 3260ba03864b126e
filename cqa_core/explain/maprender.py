"""One rendering of maps for the dashboard, the CLI, the notebooks and the case sheet: a stated scale,
a colormap chosen by sign, a colour bar with units.

    s = scale_of([map_a, map_b], "occlusion", "Δ cosine when occluded", signed=True,
                 normalisation=SHARED_PAIR)          # MapScale: vmin = -vmax = the largest |value|
    rgb = colour(map_a, s)                           # (H, W, 3) uint8, zero -> the neutral colour
    img = overlay(photo, map_a, s, alpha=0.5)        # (H, W, 3) uint8, the opacity slider's alpha
    bar = colour_bar(s)                              # (h, w, 3) uint8 PNG-ready, ticks + unit
    record["scale"] = s.as_json()                    # what analysis.json keeps for the map

Every map states its normalisation, one of

* ``"per map"``: its own range (two maps' colours cannot be compared);
* ``"shared across pair"``: the range over both faces' maps (face a and face b comparable);
* ``"shared across branches"``: the range over a face's branch maps (branches comparable).

Unsigned maps use a sequential colormap from vmin to vmax; signed maps (what raises and what
lowers the similarity) a diverging one centred on zero with symmetric limits -L .. L, so zero is
always the neutral middle colour and red / blue read the same on every map.

numpy + matplotlib only (no torch): dashboard kernels import it. matplotlib is imported inside the
functions that draw (it comes with the explain extra) so importing this module stays cheap.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from cqa_core.explain.common import ExplainError

PER_MAP = "per map"
SHARED_PAIR = "shared across pair"
SHARED_BRANCHES = "shared across branches"
NORMALISATIONS = (PER_MAP, SHARED_PAIR, SHARED_BRANCHES)

SEQUENTIAL = "viridis"  # perceptually uniform, readable in grey and by colour-blind viewers
DIVERGING = "RdBu_r"  # red = raises the similarity, blue = lowers it, near-white = zero

UNITS: dict[str, tuple[str, bool]] = {
    "similarity-map": ("share of cosine", True),
    "occlusion": ("Δ cosine when occluded", True),
    "attention": ("attention weight", False),
    "ig": ("share of cosine gap (IG)", True),
    "rise": ("cosine when kept − mean cosine", True),
    "corr-rise": ("correlation with cosine", True),
    "xssab": ("|∂ supporting| − |∂ opposing|", True),
    "gradcam": ("relative importance", False),
}
"""Suggested (unit, signed) of each registered method; a method not listed states its own."""


@dataclass(frozen=True)
class MapScale:
    """How a map's values become colours, stated beside it.

    Attributes:
        method: the registry name of the method that made the map.
        normalisation: one of :data:`NORMALISATIONS`.
        vmin: the value drawn at the colormap's low end (-vmax for a signed map).
        vmax: the value drawn at its high end.
        signed: diverging colormap centred on zero (True) or sequential (False).
        unit: what the values measure, shown under the colour bar.
        colormap: a matplotlib colormap name.
    """

    method: str
    normalisation: str
    vmin: float
    vmax: float
    signed: bool
    unit: str
    colormap: str = ""

    def __post_init__(self) -> None:
        if self.normalisation not in NORMALISATIONS:
            raise ExplainError(f"unknown normalisation {self.normalisation!r}; choose one of {', '.join(NORMALISATIONS)}")
        if not (np.isfinite(self.vmin) and np.isfinite(self.vmax)) or self.vmax < self.vmin:
            raise ExplainError(f"a map's range must be finite with vmin <= vmax, got {self.vmin} .. {self.vmax}")
        if self.signed and not np.isclose(self.vmin, -self.vmax):
            raise ExplainError(f"a signed map's range is symmetric about zero, got {self.vmin} .. {self.vmax}")
        if not self.colormap:
            object.__setattr__(self, "colormap", DIVERGING if self.signed else SEQUENTIAL)

    def as_json(self) -> dict[str, Any]:
        """The record analysis.json keeps: method, normalisation, vmin, vmax, signed, unit, colormap."""
        return {k: (float(v) if isinstance(v, (float, np.floating)) else v) for k, v in asdict(self).items()}

    @classmethod
    def from_json(cls, record: dict[str, Any]) -> MapScale:
        return cls(**{k: record[k] for k in ("method", "normalisation", "vmin", "vmax", "signed", "unit", "colormap")})

    def caption(self) -> str:
        """One line under a picture: "Δ cosine when occluded, -0.12 .. 0.12, shared across pair"."""
        return f"{self.unit}, {_fmt(self.vmin)} .. {_fmt(self.vmax)}, {self.normalisation}"


def _fmt(v: float) -> str:
    return "0" if v == 0 else f"{v:.3g}"


def scale_of(maps: np.ndarray | Sequence[np.ndarray], method: str, unit: str, signed: bool,
             normalisation: str = PER_MAP, limits: tuple[float, float] | None = None) -> MapScale:
    """One scale over all of ``maps`` (NaNs ignored): their extremes, symmetric about 0 when signed.

    Args:
        maps: one map (H, W) or several (a list, or an array (k, H, W)) sharing the scale.
        method: the registry name of the method.
        unit: what the values measure (:data:`UNITS`).
        signed: True: limits -L .. L with L = the largest |value|; False: min .. max.
        normalisation: what ``maps`` are: one map (``"per map"``) or the set shared (the pair, the branches).
        limits: fixed (vmin, vmax) instead of the data's (an attention map's 0 .. 1).

    Raises:
        ExplainError: no finite value, an unknown normalisation, a ``"per map"`` scale over several maps.
    """
    arrays = [np.asarray(m, np.float64) for m in (maps if isinstance(maps, (list, tuple)) else [maps])]
    count = sum(1 if a.ndim <= 2 else a.shape[0] for a in arrays)
    if normalisation == PER_MAP and count > 1:
        raise ExplainError(f"a 'per map' scale covers one map, got {count}; use scales() or a shared normalisation")
    if limits is not None:
        lo, hi = float(limits[0]), float(limits[1])
    else:
        values = np.concatenate([a.ravel() for a in arrays])
        values = values[np.isfinite(values)]
        if values.size == 0:
            raise ExplainError(f"{method}: the map has no finite value to scale")
        lo, hi = float(values.min()), float(values.max())
    if signed:
        bound = max(abs(lo), abs(hi))
        lo, hi = -bound, bound
    return MapScale(method, normalisation, lo, hi, signed, unit)


def scales(maps: Sequence[np.ndarray] | np.ndarray, method: str, unit: str, signed: bool,
           normalisation: str = PER_MAP, limits: tuple[float, float] | None = None) -> list[MapScale]:
    """A scale for each of ``maps`` (k maps, or an array (k, H, W)): its own ("per map"), or one shared by all."""
    items = list(maps)
    if normalisation == PER_MAP:
        return [scale_of(m, method, unit, signed, PER_MAP, limits) for m in items]
    shared = scale_of(items, method, unit, signed, normalisation, limits)
    return [shared] * len(items)


def normalised(m: np.ndarray, scale: MapScale) -> np.ndarray:
    """Values -> [0, 1] positions on the colormap (vmin -> 0, vmax -> 1; a signed map's 0 -> 0.5).

    NaN stays NaN; a zero-width range maps everything to the middle.
    """
    m = np.asarray(m, np.float64)
    span = scale.vmax - scale.vmin
    if span <= 0:
        return np.where(np.isfinite(m), 0.5, np.nan)
    return np.clip((m - scale.vmin) / span, 0.0, 1.0)


def _cmap(name: str):
    import matplotlib  # optional: comes with the explain extra (captum); imported only to draw

    return matplotlib.colormaps[name]


def colour(m: np.ndarray, scale: MapScale) -> np.ndarray:
    """A map (H, W) as RGB (H, W, 3) uint8 on its scale's colormap (NaN: black)."""
    t = normalised(m, scale)  # (H, W) in [0, 1]
    rgb = _cmap(scale.colormap)(np.nan_to_num(t, nan=0.0))[..., :3]  # (H, W, 3) float in [0, 1]
    rgb[~np.isfinite(t)] = 0.0
    return np.round(rgb * 255).astype(np.uint8)


def neutral(scale: MapScale) -> np.ndarray:
    """(3,) uint8 colour of the colormap's middle: a signed map's zero."""
    return colour(np.array([[(scale.vmin + scale.vmax) / 2]]), scale)[0, 0]


def overlay(image: np.ndarray, m: np.ndarray, scale: MapScale, alpha: float = 0.5,
            support: np.ndarray | None = None, fade: bool | None = None) -> np.ndarray:
    """Blend a map's colours onto an RGB uint8 image (H, W, 3) -> (H, W, 3) uint8.

    Args:
        image: the photo or chip.
        m: (H, W) map on the same grid.
        scale: its :class:`MapScale`.
        alpha: the opacity slider's value in [0, 1].
        support: (H, W) in [0, 1] scaling the opacity (``render.crop_support``: untinted outside the crop).
        fade: scale the opacity by |position - middle| so near-zero values leave the photo visible;
            None: on for signed maps (whose zero is a near-white neutral).
    """
    if image.shape[:2] != np.shape(m):
        raise ExplainError(f"map {np.shape(m)} does not match image {image.shape[:2]}")
    a = np.full(np.shape(m), float(alpha))  # (H, W)
    if fade if fade is not None else scale.signed:
        a = a * np.nan_to_num(np.abs(normalised(m, scale) - 0.5) * 2.0)  # (H, W) 0 at zero, 1 at the limits
    if support is not None:
        a = a * np.asarray(support, np.float64)
    blend = (1.0 - a[..., None]) * image.astype(np.float64) + a[..., None] * colour(m, scale)  # (H, W, 3)
    return np.clip(np.round(blend), 0, 255).astype(np.uint8)


def ticks(scale: MapScale, count: int = 5) -> list[tuple[float, str]]:
    """(value, label) of ``count`` evenly spaced ticks from vmin to vmax (odd counts put a tick on a signed 0)."""
    if count < 2:
        raise ExplainError(f"a colour bar needs at least 2 ticks, got {count}")
    values = np.linspace(scale.vmin, scale.vmax, count)
    if scale.signed and count % 2:
        values[count // 2] = 0.0  # exactly zero, not -1e-17
    return [(float(v), _fmt(float(v))) for v in values]


BAR_AXES = (0.1, 0.55, 0.8, 0.3)  # the bar's place in the image: left, bottom, width, height (fractions; room for end ticks' labels)


def colour_bar(scale: MapScale, width: int = 320, height: int = 64, count: int = 5) -> np.ndarray:
    """A horizontal colour bar (height, width, 3) uint8, PNG-ready: the colormap, ``count`` ticks and the unit.

    The bar fills :data:`BAR_AXES` of the image (so its pixels can be located); ticks and the unit
    text are drawn below it on white.
    """
    # optional: matplotlib comes with the explain extra (see _cmap)
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    dpi = 100
    fig = Figure(figsize=(width / dpi, height / dpi), dpi=dpi, facecolor="white")
    canvas = FigureCanvasAgg(fig)
    ax = fig.add_axes(BAR_AXES)
    gradient = np.linspace(scale.vmin, scale.vmax, 256)[None]  # (1, 256)
    pairs = ticks(scale, count) if scale.vmax > scale.vmin else [(scale.vmin, _fmt(scale.vmin))]
    lo, hi = (scale.vmin, scale.vmax) if scale.vmax > scale.vmin else (scale.vmin - 1.0, scale.vmin + 1.0)
    ax.set_xticks([v for v, _ in pairs], [t for _, t in pairs], fontsize=7)
    ax.set_yticks([])
    ax.imshow(colour(gradient, scale), aspect="auto", extent=(lo, hi, 0, 1), interpolation="nearest")
    ax.set_xlim(lo, hi)
    ax.tick_params(length=2, pad=1)
    ax.set_xlabel(scale.unit, fontsize=7, labelpad=1)
    for side in ax.spines.values():
        side.set_linewidth(0.5)
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[..., :3].copy()  # (height, width, 3) uint8
