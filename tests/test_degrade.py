"""Synthetic masks and degradations: coverage, determinism, hand-checkable pixels."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from cqa_core.data.degrade import (
    DEGRADE_KINDS,
    MASK_KINDS,
    apply_mask,
    blur,
    degrade,
    downscale,
    face_anchor_points,
    noise,
    occlude,
)
from cqa_core.data.template import ARCFACE_TEMPLATE

GREY = np.full((112, 112, 3), 128, np.uint8)


def _px(p: np.ndarray) -> tuple[int, int]:
    return int(round(p[1])), int(round(p[0]))  # (row, col)


def test_anchor_points_sit_where_masks_go() -> None:
    a, b, c, d, e, f = face_anchor_points()
    eyes_y, nose_y, mouth_y = ARCFACE_TEMPLATE[0, 1], ARCFACE_TEMPLATE[2, 1], ARCFACE_TEMPLATE[3, 1]
    assert eyes_y < b[1] < nose_y  # nose bridge between eyes and nose tip
    assert a[0] < ARCFACE_TEMPLATE[0, 0] and c[0] > ARCFACE_TEMPLATE[1, 0]  # cheeks outside the eyes
    assert d[1] > mouth_y and f[1] > mouth_y and e[1] > d[1]  # below the lips, chin lowest
    assert abs(a[1] - c[1]) < 0.5  # the template's eyes are (nearly) level


@pytest.mark.data
@pytest.mark.parametrize("kind", MASK_KINDS)
def test_mask_covers_nose_and_mouth_not_eyes(kind: str, shared_data: Path) -> None:
    out, alpha = apply_mask(GREY, kind, seed=0, mask_root=shared_data / "masks")
    assert out.shape == (112, 112, 3) and out.dtype == np.uint8
    assert alpha.shape == (112, 112) and 0 <= alpha.min() and alpha.max() <= 1
    for p in ARCFACE_TEMPLATE[2:]:  # nose tip, mouth corners
        assert alpha[_px(p)] > 0.9, (kind, p)
    for p in ARCFACE_TEMPLATE[:2]:  # eyes: untouched
        r, c = _px(p)
        assert alpha[r - 4:r + 5, c - 4:c + 5].max() == 0.0, (kind, p)
        assert (out[r, c] == 128).all()
    assert 0.15 < alpha.mean() < 0.5  # a mask, not a full-face cover
    changed = np.abs(out.astype(int) - 128).sum(2) > 0
    assert not changed[alpha == 0].any()  # nothing drawn outside the mask


@pytest.mark.data
def test_mask_is_deterministic_per_seed(shared_data: Path) -> None:
    a1, c1 = apply_mask(GREY, "surgical", seed=3)
    a2, c2 = apply_mask(GREY, "surgical", seed=3)
    a3, c3 = apply_mask(GREY, "surgical", seed=4)
    assert np.array_equal(a1, a2) and np.array_equal(c1, c2)
    assert not np.array_equal(c1, c3)
    assert apply_mask(GREY, "random", seed=5)[0].shape == (112, 112, 3)
    with pytest.raises(ValueError, match="unknown mask kind"):
        apply_mask(GREY, "balaclava")


def test_mask_root_missing_is_clear(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="masks.cfg"):
        apply_mask(GREY, "surgical", mask_root=tmp_path)


def test_degrade_mask_reads_the_given_mask_folder(tmp_path: Path, shared_data: Path) -> None:
    with pytest.raises(FileNotFoundError, match="masks.cfg"):  # not the default data root's masks
        degrade(GREY, "mask", seed=3, mask_root=tmp_path)
    given = degrade(GREY, "mask", seed=3, mask_root=shared_data / "masks")
    assert np.array_equal(given, apply_mask(GREY, "random", seed=3, mask_root=shared_data / "masks")[0])


def test_blur_keeps_flat_images_and_spreads_a_dot() -> None:
    assert np.array_equal(blur(GREY, 2.0), GREY)
    dot = np.zeros((31, 31, 3), np.uint8)
    dot[15, 15] = 255
    b = blur(dot, 1.0)[:, :, 0].astype(float)
    assert b[15, 15] < 255 and b[15, 16] > 0 and b[15, 16] == b[16, 15] == b[15, 14]
    assert abs(b.sum() - 255) < 10  # energy preserved


def test_downscale_averages_blocks() -> None:
    img = np.zeros((4, 4, 3), np.uint8)
    img[:, ::2] = 200  # stripes 200, 0, 200, 0
    out = downscale(img, 2.0)
    assert out.shape == (4, 4, 3) and np.allclose(out, 100, atol=1)  # the stripes average out


def test_noise_statistics_and_seed() -> None:
    n1, n2 = noise(GREY, 10.0, seed=1), noise(GREY, 10.0, seed=1)
    assert np.array_equal(n1, n2)
    d = n1.astype(float) - 128
    assert abs(d.mean()) < 0.5 and 9.0 < d.std() < 11.0


def test_occlude_box_and_seeded_square() -> None:
    out = occlude(GREY, box=(10, 20, 30, 25))
    assert (out[20:25, 10:30] == 0).all() and (out == 0).sum() == 20 * 5 * 3
    sq = occlude(GREY, seed=7, size=0.25)
    assert (sq == 0).all(axis=2).sum() == 28 * 28
    assert np.array_equal(sq, occlude(GREY, seed=7, size=0.25))


@pytest.mark.data
@pytest.mark.parametrize("kind", DEGRADE_KINDS)
def test_degrade_grows_with_severity(kind: str, shared_data: Path) -> None:
    rng = np.random.default_rng(0)
    img = (rng.random((112, 112, 3)) * 255).astype(np.uint8)
    diffs = [np.abs(degrade(img, kind, s, seed=1).astype(int) - img).mean() for s in (1, 5)]
    assert diffs[0] > 0
    if kind != "mask":
        assert diffs[1] > diffs[0]
    with pytest.raises(ValueError):
        degrade(img, kind, 0)
