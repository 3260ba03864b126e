"""Black-box perturbation explainers (occlusion, RISE, feature ablation) on a toy recognizer whose
embedding depends only on the 20 x 20 window [40:60, 40:60] of a 112 x 112 chip: the answers
are known by hand."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from cqa_core.explain.blackbox import (
    feature_ablation,
    occlusion,
    rise,
    rise_masks,
    similarity_forward,
    window_and_stride,
)
from cqa_core.recognizers.base import Preprocess, Recognizer, RecognizerError

S = 112
LO, HI = 40, 60  # the only pixels the toy embedding reads
CONST = 30.0  # the constant part of the embedding
PRE = Preprocess(size=S, template="arcface", mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))


def toy_embed(chips: np.ndarray) -> np.ndarray:
    """(N, S, S, 3) uint8 -> (N, 6): mean colour of the window - 127.5, then 3 x CONST."""
    colour = chips[:, LO:HI, LO:HI].astype(np.float64).mean(axis=(1, 2)) - 127.5  # (N, 3)
    return np.concatenate([colour, np.full((len(chips), 3), CONST)], axis=1).astype(np.float32)  # (N, 6)


class ToyModule(nn.Module):
    """The same function on preprocessed input (mean 0, std 1: raw 0-255 pixels)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        colour = x[:, :, LO:HI, LO:HI].mean(dim=(2, 3)) - 127.5  # (N, 3)
        return torch.cat([colour, torch.full_like(colour, CONST)], dim=1)  # (N, 6)


@pytest.fixture(scope="module")
def blackbox() -> Recognizer:
    return Recognizer(name="toy", kind="torch", preprocess=PRE, embed_fn=toy_embed)


@pytest.fixture(scope="module")
def whitebox() -> Recognizer:
    return Recognizer(name="toy module", kind="torch", preprocess=PRE, module=ToyModule())


def face(seed: int, colour: tuple[int, int, int]) -> np.ndarray:
    """(1, S, S, 3) uint8: noise, with the window painted ``colour``."""
    rng = np.random.default_rng(seed)
    chip = rng.integers(0, 256, size=(1, S, S, 3), dtype=np.uint8)  # (1, S, S, 3)
    chip[:, LO:HI, LO:HI] = colour
    return chip


A, B = face(0, (230, 60, 50)), face(1, (210, 80, 60))


def cos(u: np.ndarray, v: np.ndarray) -> float:
    return float(u @ v / np.linalg.norm(u) / np.linalg.norm(v))


def test_window_and_stride_tile_the_chip():
    assert window_and_stride(150, 7) == (42, 18)
    assert window_and_stride(112, 7) == (28, 14)
    for size in (100, 112, 150, 224):
        for grid in (1, 3, 7, 10):
            w, s = window_and_stride(size, grid)
            assert (grid - 1) * s + w == size and w >= 2 * s  # last window ends on the edge; overlap >= stride


def test_similarity_forward_is_the_cosine(blackbox, whitebox):
    ref = toy_embed(B)[0]  # (6,)
    x = torch.from_numpy(A).permute(0, 3, 1, 2).float()  # (1, 3, S, S)
    want = cos(toy_embed(A)[0], ref)
    assert similarity_forward(blackbox, ref)(x).item() == pytest.approx(want, abs=1e-6)
    assert similarity_forward(whitebox, ref)(x).item() == pytest.approx(want, abs=1e-6)


def test_occlusion_grid_1_is_the_hand_computed_drop(whitebox):
    # one window = the whole chip greyed to 127.5: the embedding becomes (0, 0, 0, C, C, C)
    eb = toy_embed(B)[0]  # (6,)
    grey = np.array([0, 0, 0, CONST, CONST, CONST])
    want = cos(toy_embed(A)[0], eb) - cos(grey, eb)
    m = occlusion(whitebox, A, B, grid=1)  # (1, S, S)
    np.testing.assert_allclose(m, want, atol=1e-5)


def test_occlusion_points_at_the_window_and_is_zero_far_from_it(blackbox):
    m = occlusion(blackbox, A, B)[0]  # (S, S); windows 28 px, stride 14
    y, x = np.unravel_index(np.argmax(m), m.shape)
    assert LO <= y < HI and LO <= x < HI
    assert m.max() > 0.05
    # only windows starting at 14, 28, 42, 56 touch [40, 60): pixels outside [14, 84) are never in one
    far = np.ones_like(m, bool)
    far[14:84, 14:84] = False
    assert np.abs(m[far]).max() < 1e-6


def test_rise_points_at_the_window_and_is_near_zero_far_from_it(blackbox):
    m = rise(blackbox, A, B, masks=300, seed=0)[0]  # (S, S)
    y, x = np.unravel_index(np.argmax(m), m.shape)
    assert LO <= y < HI and LO <= x < HI
    inside = m[LO:HI, LO:HI].mean()
    far = np.concatenate([m[:20].ravel(), m[95:].ravel()])
    assert inside > 0 and np.abs(far).mean() < 0.15 * inside


def test_feature_ablation_blocks(blackbox):
    m = feature_ablation(blackbox, A, B, grid=8)[0]  # (S, S); 14 px blocks: [40, 60) meets blocks 2, 3, 4
    assert m[50, 50] == m.max() > 0
    assert np.abs(m[:28]).max() < 1e-6 and np.abs(m[70:]).max() < 1e-6


def test_rise_is_seeded_and_independent_of_the_batch(blackbox):
    one = rise(blackbox, A, B, masks=64, seed=3, batch=64)
    again = rise(blackbox, A, B, masks=64, seed=3, batch=10)
    other = rise(blackbox, A, B, masks=64, seed=4)
    np.testing.assert_allclose(one, again, atol=1e-6)
    assert np.abs(one - other).max() > 1e-3
    assert torch.equal(rise_masks(8, S, seed=1), rise_masks(8, S, seed=1))


def test_rise_masks_follow_the_paper():
    m = rise_masks(400, S, cells=7, p=0.5, seed=0)  # (400, 1, S, S)
    assert m.shape == (400, 1, S, S) and m.min() >= 0 and m.max() <= 1
    assert abs(m.mean().item() - 0.5) < 0.03  # keep probability p


@pytest.mark.parametrize("method, total", [(occlusion, 2 * 50), (rise, 2 * 100), (feature_ablation, 2 * 65)])
def test_progress_counts_embeddings_up_to_the_total(blackbox, method, total):
    seen: list[tuple[int, int]] = []
    kwargs = {"masks": 100, "batch": 32} if method is rise else {}
    method(blackbox, np.concatenate([A, B]), np.concatenate([B, A]), progress=lambda d, t: seen.append((d, t)),
           **kwargs)
    done = [d for d, _ in seen]
    assert all(t == total for _, t in seen)
    assert done == sorted(done) and len(set(done)) == len(done) and done[-1] == total


def test_whitebox_and_blackbox_give_the_same_occlusion(blackbox, whitebox):
    # an integer grey: the black-box path rounds pixels to uint8, the module path does not
    chips_a, chips_b = np.concatenate([A, B]), np.concatenate([B, A])
    mb = occlusion(blackbox, chips_a, chips_b, baseline=128.0)  # (2, S, S)
    mw = occlusion(whitebox, chips_a, chips_b, baseline=128.0)  # (2, S, S)
    np.testing.assert_allclose(mb, mw, atol=1e-5)
    fb = feature_ablation(blackbox, chips_a, chips_b, baseline=128.0)
    fw = feature_ablation(whitebox, chips_a, chips_b, baseline=128.0)
    np.testing.assert_allclose(fb, fw, atol=1e-5)


def test_each_row_is_explained_against_its_own_partner(blackbox):
    both = occlusion(blackbox, np.concatenate([A, B]), np.concatenate([B, A]))  # (2, S, S)
    np.testing.assert_allclose(both[1], occlusion(blackbox, B, A)[0], atol=1e-6)
    shared = rise(blackbox, np.concatenate([A, B]), B, masks=32)  # one partner row for both faces
    np.testing.assert_allclose(shared[0], rise(blackbox, A, B, masks=32)[0], atol=1e-6)


def test_wrong_chips_are_refused(blackbox):
    with pytest.raises(RecognizerError, match="uint8"):
        occlusion(blackbox, np.zeros((1, 100, 100, 3), np.uint8), B)
    with pytest.raises(RecognizerError, match="rows"):
        rise(blackbox, np.concatenate([A, A, A]), np.concatenate([B, B]))
