"""benchmarks/branch_maps.py's level-free similarity: the map correlation CAL's Gaussian term misses."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch

from cqa_core.explain.diversity import diversity_of_maps

SPEC = importlib.util.spec_from_file_location("branch_maps", Path(__file__).resolve().parents[1] / "benchmarks" / "branch_maps.py")
branch_maps = importlib.util.module_from_spec(SPEC)
SPEC.loader.exec_module(branch_maps)


def test_same_shape_at_two_levels_is_gaussian_dissimilar_but_fully_correlated() -> None:
    shape = torch.zeros(2, 2)
    shape[0, 0] = 1.0  # one bright cell
    maps = torch.stack([0.2 + 0.1 * shape, 0.6 + 0.3 * shape])[None]  # (1, 2, 2, 2): same place, levels 0.2 / 0.6
    # (M_i - M_j)^2 >= 0.16 on every cell, so exp(-d / 0.01) < 1e-6: CAL sees two different maps
    assert diversity_of_maps(maps).mean_gaussian[0] == pytest.approx(0.0, abs=1e-6)
    assert branch_maps.map_correlation(maps)[0] == pytest.approx(1.0)


def test_disjoint_spots_anticorrelate_and_a_flat_map_counts_zero() -> None:
    a, b, flat = torch.zeros(4), torch.zeros(4), torch.full((4,), 0.5)
    a[0], b[3] = 1.0, 1.0
    # a and b: centred (3/4, -1/4, -1/4, -1/4) and (-1/4, -1/4, -1/4, 3/4) -> dot -1/4 over norm^2 3/4 = -1/3
    assert branch_maps.map_correlation(torch.stack([a, b]).view(1, 2, 2, 2))[0] == pytest.approx(-1 / 3)
    assert branch_maps.map_correlation(torch.stack([a, flat]).view(1, 2, 2, 2))[0] == pytest.approx(0.0)
