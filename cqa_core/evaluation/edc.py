"""Error-versus-discard characteristics (EDC): how well a quality score predicts match errors.

The face-image-quality (FIQA) protocol of Grother & Tabassi (2007) and ISO/IEC 29794-1:

1. **Threshold, fixed once.** On all pairs, the decision threshold is set so that the false-match
   rate (FMR) among different-person pairs is at most the target: with ``n_imp`` impostor scores
   sorted high to low and ``k = floor(fmr * n_imp)``, a pair is a match when its score is *above*
   the (k+1)-th highest impostor score ``t`` (so at most k impostors match). This is the operating
   point :func:`cqa_core.metrics.tar_at_far` reads from the ROC, so FNMR at no discard equals
   1 - TAR@FAR. The threshold is not re-tuned as pairs are discarded.
2. **Pair quality** = the lower of the two faces' qualities (``min``).
3. **Discard.** The same-person (mated) pairs are sorted by pair quality, lowest first; ties are
   broken in a seeded random order (a constant quality then discards exactly like random
   discarding, never in file order). Discarding d of the n mated pairs leaves n - d, and
   ``FNMR(d / n)`` = the fraction of those whose score is at or below ``t``. Only mated pairs are
   discarded because FNMR is measured on them alone.
4. **Area.** The EDC area is the trapezoid integral of FNMR over the discard fraction from 0 to
   ``max_discard`` (default 0.2, the partial area ISO/IEC 29794-1 recommends), through every
   d = 0 .. floor(max_discard * n). Lower is better; a useless quality keeps FNMR flat, so its area is
   ``max_discard * FNMR(0)``.

Random discarding (the baseline every quality score must beat) draws uniform pair qualities;
:func:`random_edc` averages ``draws`` such curves.
"""

from __future__ import annotations

from typing import Any

import numpy as np

FMRS = (1e-3, 1e-2)
MAX_DISCARD = 0.2
GRID = np.round(np.arange(0, 51) / 100, 2)  # discard fractions stored and plotted: 0, 0.01, .., 0.5


def fmr_threshold(impostor: np.ndarray, fmr: float) -> float:
    """Score ``t`` such that "match = score > t" accepts at most floor(fmr * n) impostors.

    ``-inf`` when that allows every impostor (fmr >= 1); raises without impostors.
    """
    s = np.sort(np.asarray(impostor, dtype=np.float64))[::-1]  # (n,) high to low
    if len(s) == 0:
        raise ValueError("an FMR threshold needs different-person pairs")
    k = int(np.floor(fmr * len(s) + 1e-9))
    return float(s[k]) if k < len(s) else float("-inf")


def pair_quality(q1: np.ndarray, q2: np.ndarray) -> np.ndarray:
    """Pair quality: the lower face quality, (N,), (N,) -> (N,)."""
    return np.minimum(np.asarray(q1, np.float64), np.asarray(q2, np.float64))  # (N,)


def discard_order(quality: np.ndarray, seed: int = 0) -> np.ndarray:
    """Indices lowest quality first; ties in a random order drawn from ``seed``."""
    q = np.asarray(quality, dtype=np.float64)  # (n,)
    tiebreak = np.random.default_rng(seed).permutation(len(q))  # (n,)
    return np.lexsort((tiebreak, q))  # (n,) sorted by q, then by the random key


def fnmr_curve(genuine: np.ndarray, quality: np.ndarray, threshold: float, seed: int = 0) -> np.ndarray:
    """FNMR after discarding d = 0 .. n-1 lowest-quality mated pairs: (n,) scores, (n,) quality -> (n,)."""
    g = np.asarray(genuine, dtype=np.float64)  # (n,)
    if len(g) == 0:
        raise ValueError("an EDC needs same-person pairs")
    miss = (g <= threshold)[discard_order(quality, seed)]  # (n,) in discard order
    left_misses = np.cumsum(miss[::-1])[::-1]  # (n,) misses among pairs d .. n-1
    return left_misses / (len(g) - np.arange(len(g)))  # (n,)


def edc_area(curve: np.ndarray, max_discard: float = MAX_DISCARD) -> float:
    """Trapezoid area under FNMR(d / n) for d = 0 .. floor(max_discard * n)."""
    n = len(curve)
    d = min(int(np.floor(max_discard * n + 1e-9)), n - 1)
    if d == 0:
        return 0.0
    return float(np.sum((curve[:d] + curve[1:d + 1]) / 2) / n)


def on_grid(curve: np.ndarray, grid: np.ndarray = GRID) -> list[float | None]:
    """The curve at discard fractions ``grid`` (d = floor(f * n)); None past its end."""
    n = len(curve)
    d = np.floor(np.asarray(grid) * n + 1e-9).astype(int)  # (G,)
    return [float(curve[i]) if i < n else None for i in d]


def random_edc(genuine: np.ndarray, threshold: float, draws: int = 10, seed: int = 0,
               max_discard: float = MAX_DISCARD) -> tuple[np.ndarray, list[float]]:
    """Mean FNMR curve of ``draws`` random discard orders, and each draw's area."""
    rng = np.random.default_rng(seed)
    curves = [fnmr_curve(genuine, rng.random(len(genuine)), threshold, seed=seed + 1 + i) for i in range(draws)]
    return np.mean(curves, axis=0), [edc_area(c, max_discard) for c in curves]


def edc(scores: np.ndarray, issame: np.ndarray, qualities: dict[str, np.ndarray], fmrs: tuple[float, ...] = FMRS,
        max_discard: float = MAX_DISCARD, random_draws: int = 10, seed: int = 0) -> dict[str, Any]:
    """EDC of several pair-quality readings, plus random discarding, at each target FMR.

    Args:
        scores: (N,) similarity of every pair (higher = more alike).
        issame: (N,) bool, True for same-person (mated) pairs.
        qualities: reading name -> (N,) pair quality (higher = better); "random" is added here.
        fmrs: target false-match rates.
        max_discard: upper end of the EDC area.
        random_draws: random discard orders averaged for the baseline.
        seed: tie-break and random-draw seed.

    Returns:
        JSON-ready dict: ``fractions`` (the grid), and per FMR ``threshold``, ``fnmr_at_0`` and per
        reading ``area`` and ``fnmr`` (on the grid); random adds ``area_std`` over its draws.
    """
    s = np.asarray(scores, dtype=np.float64)  # (N,)
    y = np.asarray(issame, dtype=bool)  # (N,)
    if s.shape != y.shape or s.ndim != 1:
        raise ValueError(f"scores {s.shape} and issame {y.shape} must be equal vectors")
    if not 0 < max_discard < 1:
        raise ValueError(f"max_discard must be in (0, 1), got {max_discard}")
    gen = s[y]  # (n,)
    out: dict[str, Any] = {"fractions": GRID.tolist(), "max_discard": max_discard, "n_mated": int(y.sum()),
                           "n_impostor": int((~y).sum()), "random_draws": random_draws, "fmr": {}}
    for fmr in fmrs:
        t = fmr_threshold(s[~y], fmr)
        row: dict[str, Any] = {"threshold": t, "curves": {}}
        for name, q in qualities.items():
            q = np.asarray(q, dtype=np.float64)  # (N,)
            if q.shape != s.shape:
                raise ValueError(f"quality {name!r} has shape {q.shape}, expected {s.shape}")
            curve = fnmr_curve(gen, q[y], t, seed)  # (n,)
            row["curves"][name] = {"area": edc_area(curve, max_discard), "fnmr": on_grid(curve)}
        mean, areas = random_edc(gen, t, random_draws, seed, max_discard)
        row["curves"]["random"] = {"area": float(np.mean(areas)), "area_std": float(np.std(areas)), "fnmr": on_grid(mean)}
        row["fnmr_at_0"] = float(np.mean(gen <= t))
        out["fmr"][f"{fmr:g}"] = row
    return out
