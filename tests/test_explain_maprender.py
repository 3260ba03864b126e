"""One rendering of maps: scales, colours, overlays and colour bars with hand-checkable values."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from cqa_core.explain.common import ExplainError
from cqa_core.explain.maprender import (
    BAR_AXES,
    PER_MAP,
    SHARED_BRANCHES,
    SHARED_PAIR,
    MapScale,
    colour,
    colour_bar,
    neutral,
    normalised,
    overlay,
    scale_of,
    scales,
    ticks,
)

A = np.array([[0.1, -0.3], [0.05, 0.2]])
B = np.array([[0.4, 0.0], [-0.1, 0.15]])


def test_shared_pair_scale_spans_the_extremes_of_both_maps():
    s = scale_of([A, B], "rise", "cosine when kept", signed=False, normalisation=SHARED_PAIR)
    assert (s.vmin, s.vmax) == (-0.3, 0.4)  # min of A, max of B
    signed = scale_of([A, B], "occlusion", "Δ cosine when occluded", signed=True, normalisation=SHARED_PAIR)
    assert (signed.vmin, signed.vmax) == (-0.4, 0.4)  # symmetric: the largest |value| of either map
    assert signed.colormap == "RdBu_r" and s.colormap == "viridis"


def test_per_map_scales_are_each_maps_own_and_shared_ones_are_one():
    per = scales([A, B], "occlusion", "Δ cosine when occluded", signed=True)
    assert [(x.vmin, x.vmax) for x in per] == [(-0.3, 0.3), (-0.4, 0.4)]
    branches = scales(np.stack([A, B, 2 * A]), "attention", "attention weight", signed=False,
                      normalisation=SHARED_BRANCHES)
    assert len({(x.vmin, x.vmax) for x in branches}) == 1 and branches[0].vmin == -0.6
    with pytest.raises(ExplainError, match="'per map' scale covers one map"):
        scale_of([A, B], "rise", "u", signed=False, normalisation=PER_MAP)


def test_fixed_limits_nans_and_bad_scales():
    s = scale_of(np.array([[0.2, np.nan]]), "attention", "attention weight", signed=False, limits=(0.0, 1.0))
    assert (s.vmin, s.vmax) == (0.0, 1.0)
    assert scale_of(np.array([[np.nan, 0.5, -0.25]]), "ig", "u", signed=True).vmax == 0.5  # NaN ignored
    with pytest.raises(ExplainError, match="no finite value"):
        scale_of(np.full((2, 2), np.nan), "ig", "u", signed=True)
    with pytest.raises(ExplainError, match="symmetric"):
        MapScale("ig", PER_MAP, -0.1, 0.3, True, "u")
    with pytest.raises(ExplainError, match="unknown normalisation"):
        MapScale("ig", "per face", 0, 1, False, "u")


def test_normalised_positions_by_hand():
    s = MapScale("ig", PER_MAP, -2.0, 2.0, True, "u")
    np.testing.assert_allclose(normalised(np.array([-2.0, -1.0, 0.0, 1.0, 3.0]), s), [0, 0.25, 0.5, 0.75, 1.0])
    flat = MapScale("ig", PER_MAP, 0.0, 0.0, True, "u")
    np.testing.assert_allclose(normalised(np.array([0.0]), flat), [0.5])


def test_diverging_zero_is_the_neutral_colour_and_signs_are_red_and_blue():
    s = scale_of(np.array([[-1.0, 0.0, 1.0]]), "occlusion", "Δ cosine when occluded", signed=True)
    rgb = colour(np.array([[-1.0, 0.0, 1.0]]), s)[0].astype(int)  # (3, 3)
    assert (rgb[1] == neutral(s)).all() and rgb[1].min() > 230 and np.ptp(rgb[1]) < 12  # near-white grey
    assert rgb[2, 0] > rgb[2, 2] + 50  # +1: dark red (103, 0, 31)
    assert rgb[0, 2] > rgb[0, 0] + 50  # -1: dark blue (5, 48, 97)


def test_sequential_ends_are_viridis_ends():
    s = MapScale("attention", PER_MAP, 0.0, 1.0, False, "attention weight")
    rgb = colour(np.array([[0.0, 1.0]]), s)[0]
    np.testing.assert_array_equal(rgb[0], [68, 1, 84])  # viridis(0)
    np.testing.assert_array_equal(rgb[1], [253, 231, 37])  # viridis(1)


def test_overlay_alpha_and_fading_of_signed_zero():
    img = np.full((2, 2, 3), 100, np.uint8)
    m = np.array([[0.0, 1.0], [-1.0, 0.0]])
    s = MapScale("occlusion", PER_MAP, -1.0, 1.0, True, "Δ cosine when occluded")
    np.testing.assert_array_equal(overlay(img, m, s, alpha=0.0), img)
    out = overlay(img, m, s, alpha=1.0)
    np.testing.assert_array_equal(out[0, 0], img[0, 0])  # zero fades out: the photo shows
    np.testing.assert_array_equal(out[0, 1], colour(m, s)[0, 1])  # the limit is fully coloured
    unfaded = overlay(img, m, s, alpha=1.0, fade=False)
    np.testing.assert_array_equal(unfaded[0, 0], neutral(s))
    support = np.array([[1.0, 0.0], [1.0, 1.0]])
    np.testing.assert_array_equal(overlay(img, m, s, 1.0, support)[0, 1], img[0, 1])  # outside the crop
    with pytest.raises(ExplainError, match="does not match"):
        overlay(img, np.zeros((3, 3)), s)


def test_ticks_put_zero_in_the_middle_of_a_signed_bar():
    s = MapScale("occlusion", SHARED_PAIR, -0.2, 0.2, True, "Δ cosine when occluded")
    assert [t for _, t in ticks(s)] == ["-0.2", "-0.1", "0", "0.1", "0.2"]
    assert ticks(s)[2][0] == 0.0


def test_colour_bar_is_an_rgb_image_with_the_colormap_where_the_bar_is():
    s = MapScale("occlusion", SHARED_PAIR, -0.2, 0.2, True, "Δ cosine when occluded")
    bar = colour_bar(s, width=320, height=64)
    assert bar.shape == (64, 320, 3) and bar.dtype == np.uint8
    left, bottom, w, h = BAR_AXES
    y = int((1 - bottom - h / 2) * 64)
    x0, x1 = int(left * 320), int((left + w) * 320)
    mid = bar[y, (x0 + x1) // 2].astype(int)
    assert np.abs(mid - neutral(s)).max() < 8  # the bar's middle is the neutral colour
    assert bar[y, x0 + 3, 2] > bar[y, x0 + 3, 0] + 50 and bar[y, x1 - 3, 0] > bar[y, x1 - 3, 2] + 50
    below = bar[int((1 - bottom) * 64) + 2:]  # ticks and unit text: dark pixels on white
    assert (below.min(axis=2) < 100).any()
    other = colour_bar(MapScale("occlusion", SHARED_PAIR, -0.2, 0.2, True, "attention weight"))
    assert (other[-14:] != bar[-14:]).any()  # the unit line differs


def test_as_json_round_trips():
    s = scale_of([A, B], "similarity-map", "share of cosine", signed=True, normalisation=SHARED_PAIR)
    record = json.loads(json.dumps(s.as_json()))
    assert record == {"method": "similarity-map", "normalisation": "shared across pair", "vmin": -0.4, "vmax": 0.4,
                      "signed": True, "unit": "share of cosine", "colormap": "RdBu_r"}
    assert MapScale.from_json(record) == s
    assert s.caption() == "share of cosine, -0.4 .. 0.4, shared across pair"


def test_importing_it_loads_no_torch():
    code = "import sys, cqa_core.explain.maprender as m; m.colour_bar(m.MapScale('a', 'per map', 0, 1, False, 'u')); " \
           "print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
