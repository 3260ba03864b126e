"""A face's maps as pictures a person can read: the dashboard, ``cqa explain`` and the case sheet draw
them all here, on :mod:`cqa_core.explain.maprender`'s scales.

    kind = kind_of(session.method("occlusion"))           # MapKind(method, signed, unit) of a registry record
    sa, sb = pair_scales(pair.maps["occlusion"], kind)    # one scale shared by face a's and face b's map
    img = on_photo(pair.a, pair.maps["occlusion"][0], sa, alpha=0.5)   # (H, W, 3) uint8, tinted inside the crop
    png_ready = framed(img, sa)                           # the picture with its colour bar and caption below

Defaults, as the dashboard offers them: a pair's two maps share one scale ("shared across pair"),
so the colours of face a and face b compare; a face's branch attention maps share one scale
("shared across branches"), so the branches compare. "per map" stretches each map to its own range.
Signed maps (what supports and what opposes the match) are drawn on a diverging colormap centred on
zero: red > 0 supports the match, blue < 0 opposes it, and near-zero places leave the photo visible.

numpy + matplotlib + Pillow (+ OpenCV through ``render`` to warp onto the photo); no torch.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np
from PIL import Image

from cqa_core.explain.common import ExplainError
from cqa_core.explain.maprender import (
    PER_MAP,
    SHARED_BRANCHES,
    SHARED_PAIR,
    UNITS,
    MapScale,
    colour_bar,
    overlay,
    scales,
    ticks,
)
from cqa_core.explain.render import crop_support
from cqa_core.explain.result import FaceAnalysis

PAIR_NORMALISATIONS = (SHARED_PAIR, PER_MAP)
"""What a pair map may be scaled by (the first is the default)."""
BRANCH_NORMALISATIONS = (SHARED_BRANCHES, PER_MAP)
"""What a face's branch attention maps may be scaled by (the first is the default)."""

SIGN_READING = "red > 0 supports the match, blue < 0 opposes it"
"""How every signed map reads (occlusion: red = the cosine drops when the place is hidden)."""
RELATION_READING = ("A[i, j] = φ(P_i)·φ'(P_j) (QAN, Eq. 4): how strongly QAN relates branch i's part to branch j's, "
                    "a dot product of two learnt projections of the part features; a large A[i, j] means the two "
                    "parts weigh heavily in each other's quality score (Eq. 5). Unitless and ≥ 0; compare within "
                    "a face (rows i, columns j; not symmetric).")
DECOMPOSITION_READING = ("Cell (i, j) is face a's branch i term against face b's branch j term, "
                         "<u_a_i, u_b_j> / (|e_a| |e_b|), in units of cosine (bias: the head's constant term); "
                         "all cells sum to the cosine.")
LOO_READING = ("Removing a branch can raise the cosine: its terms can be "
               "negative (it argued against the match), and removing it changes both embeddings' norms, "
               "which divide every remaining term.")


class MapKind(NamedTuple):
    """What a method's map values are: its name, whether they are signed, and their unit."""

    method: str
    signed: bool
    unit: str


ATTENTION = MapKind("attention", False, "attention weight")
"""Branch attention maps M_i (in [0, 1])."""


def kind_of(record: Mapping[str, Any]) -> MapKind:
    """The :class:`MapKind` of a registry record (``Method.record()``, ``Session.method(label)``)."""
    name = str(record["name"])
    fallback_unit, fallback_signed = UNITS.get(name, ("map value", False))
    return MapKind(name, bool(record.get("signed", fallback_signed)), str(record.get("unit") or fallback_unit))


def pair_scales(maps: np.ndarray | Sequence[np.ndarray], kind: MapKind, normalisation: str = SHARED_PAIR) -> list[MapScale]:
    """The scales of a pair's maps (face a's, face b's): one shared by both, or each its own.

    Args:
        maps: (2, S, S) or two maps (the partner's may be missing: one map).
        kind: the method's :class:`MapKind`.
        normalisation: one of :data:`PAIR_NORMALISATIONS`; a single map falls back to ``"per map"``.
    """
    if normalisation not in PAIR_NORMALISATIONS:
        raise ExplainError(f"a pair map is scaled {' or '.join(PAIR_NORMALISATIONS)}, not {normalisation!r}")
    items = list(maps)
    return scales(items, kind.method, kind.unit, kind.signed, normalisation if len(items) > 1 else PER_MAP)


def branch_scales(maps: np.ndarray, normalisation: str = SHARED_BRANCHES, kind: MapKind = ATTENTION) -> list[MapScale]:
    """The scales of a face's b branch maps (b, S, S): one shared by all branches, or each its own."""
    if normalisation not in BRANCH_NORMALISATIONS:
        raise ExplainError(f"branch maps are scaled {' or '.join(BRANCH_NORMALISATIONS)}, not {normalisation!r}")
    return scales(list(maps), kind.method, kind.unit, kind.signed, normalisation if len(maps) > 1 else PER_MAP)


def on_photo(fa: FaceAnalysis, chip_map: np.ndarray, scale: MapScale, alpha: float = 0.5,
             photo_map: np.ndarray | None = None) -> np.ndarray:
    """A map of ``fa``'s chip drawn on its photo: (H, W, 3) uint8, tinted only inside the aligned crop.

    Args:
        fa: the face.
        chip_map: (S, S) on the chip (or already (H, W) on the photo).
        scale: its scale (:func:`pair_scales`, :func:`branch_scales`).
        alpha: the opacity slider's value.
        photo_map: the same map already warped onto the photo (``BranchAnalysis.attention_photo``).
    """
    h, w = fa.photo.shape[:2]
    heat = photo_map if photo_map is not None else (chip_map if np.shape(chip_map) == (h, w) else fa.on_photo(chip_map))
    support = None if fa.align_method == "identity" else crop_support(fa.affine, (w, h), fa.aligned.shape[0])
    return overlay(fa.photo, np.asarray(heat, np.float64), scale, alpha, support)


def on_chip(chip: np.ndarray, chip_map: np.ndarray, scale: MapScale, alpha: float = 0.5) -> np.ndarray:
    """A map drawn on the aligned chip itself: (S, S, 3) uint8."""
    return overlay(chip, np.asarray(chip_map, np.float64), scale, alpha)


def legend(scale: MapScale) -> str:
    """One line under a picture: unit, range, normalisation, and for a signed map how its colours read."""
    return scale.caption() + (f"; {SIGN_READING}" if scale.signed else "")


@functools.lru_cache(maxsize=128)  # ~80 ms to draw; a shared scale's bar repeats under every branch
def bar(scale: MapScale, width: int, count: int = 5) -> np.ndarray:
    """The scale's colour bar (ticks + unit) ``width`` px wide, (h, width, 3) uint8.

    Drawn at a width where its text fits (200 to 480 px, wide enough that the end ticks' labels
    stay inside) and resized, so a narrow picture's bar keeps its ticks apart; 3 ticks below 160 px.
    """
    count = count if width >= 160 else 3
    longest = max(len(label) for _, label in ticks(scale, count)) if scale.vmax > scale.vmin else 4
    native = int(min(max(width, 200, 28 * longest), 480))  # end labels: half a label (~5.5 px a character) in 10 %
    drawn = _resize(colour_bar(scale, width=native, height=64, count=count), width)
    drawn.setflags(write=False)  # shared by every caller of the cache
    return drawn


def _resize(image: np.ndarray, width: int) -> np.ndarray:
    if image.shape[1] == width:
        return image
    height = max(1, round(image.shape[0] * width / image.shape[1]))
    return np.asarray(Image.fromarray(image).resize((width, height), Image.LANCZOS))


def text_strip(lines: Sequence[str], width: int) -> np.ndarray:
    """Lines of small dark text on white, ``width`` px wide (drawn at >= 360 px, then resized)."""
    # optional: matplotlib comes with the explain extra (as in maprender)
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    native, dpi, line_px = max(width, 360), 100, 13
    fig = Figure(figsize=(native / dpi, (line_px * len(lines) + 6) / dpi), dpi=dpi, facecolor="white")
    canvas = FigureCanvasAgg(fig)
    for i, line in enumerate(lines):
        fig.text(0.5, 1 - (3 + line_px * (i + 0.5)) / (line_px * len(lines) + 6), line, ha="center", va="center",
                 fontsize=7, color="#222")
    canvas.draw()
    return _resize(np.asarray(canvas.buffer_rgba())[..., :3].copy(), width)


def framed(picture: np.ndarray, scale: MapScale, title: str = "") -> np.ndarray:
    """A picture with its colour bar and its legend below it (and a title above): what a PNG file holds."""
    width = picture.shape[1]
    parts = ([text_strip([title], width)] if title else []) + [picture, bar(scale, width)]
    lines = [scale.caption()] + ([SIGN_READING] if scale.signed else [])
    parts.append(text_strip(lines, width))
    return np.concatenate(parts, axis=0)
