"""Verification metrics, numpy only: fold-wise accuracy (LFW / insightface), ROC, TAR@FAR, rank-1.

The arithmetic every evaluation shares, below the layers that use it: training's pair verifier
(``training.verify``) and the evaluation protocols (``cqa_core.evaluation``) score pairs the same way.

Verification follows the LFW View 2 / insightface protocol: embeddings are L2-normalised, a pair
scores its cosine similarity, 10-fold cross-validation picks the accuracy-maximising threshold on
9 folds and measures accuracy on the 10th; mean and population std (``np.std``, as insightface)
over folds are reported. Candidate thresholds are the midpoints between consecutive distinct
scores (plus one below / above all), so the chosen threshold is exact, not a grid point. A pair is
called "same" when ``score >= threshold``.

TAR@FAR reads the ROC of all pairs (no folds): the largest true-accept rate among operating points
whose false-accept rate is ``<= FAR`` (no interpolation, so it is what a brute-force count of
every threshold gives).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

FARS = (1e-1, 1e-2, 1e-3)


@dataclass
class VerificationResult:
    """What :func:`evaluate_pairs` measures (scores are cosine similarities)."""

    accuracy: float
    accuracy_std: float
    fold_accuracies: list[float]
    fold_thresholds: list[float]
    best_threshold: float
    tar_at_far: dict[float, float]
    auc: float  # NaN when only one class is present
    n_pairs: int
    n_same: int
    fpr: np.ndarray = field(repr=False)
    tpr: np.ndarray = field(repr=False)
    thresholds: np.ndarray = field(repr=False)

    def to_dict(self, roc: bool = False) -> dict[str, Any]:
        """JSON-ready dict; ``roc=True`` adds the ROC arrays as lists."""
        d = asdict(self)
        for k in ("fpr", "tpr", "thresholds"):
            d.pop(k)
            if roc:
                d[k] = getattr(self, k).tolist()
        d["tar_at_far"] = {f"{k:g}": v for k, v in self.tar_at_far.items()}
        if d["auc"] != d["auc"]:  # NaN is not JSON
            d["auc"] = None
        return d


def l2_normalize(x: np.ndarray, eps: float = 1e-12) -> np.ndarray:
    """Rows of (N, D) divided by their L2 norm."""
    x = np.asarray(x, dtype=np.float64)  # (N, D)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), eps)  # (N, D)


def pair_scores(emb1: np.ndarray, emb2: np.ndarray) -> np.ndarray:
    """Cosine similarity of each row pair: (N, D), (N, D) -> (N,)."""
    return (l2_normalize(emb1) * l2_normalize(emb2)).sum(1)  # (N,)


def best_threshold(scores: np.ndarray, issame: np.ndarray) -> tuple[float, float]:
    """The accuracy-maximising threshold (midpoint rule, lowest on ties) and its accuracy."""
    s = np.asarray(scores, dtype=np.float64)  # (N,)
    y = np.asarray(issame, dtype=bool)  # (N,)
    order = np.argsort(s, kind="stable")
    s, y = s[order], y[order]
    n = len(s)
    neg_below = np.concatenate([[0], np.cumsum(~y)])  # (N+1,) negatives among the k lowest
    pos_below = np.concatenate([[0], np.cumsum(y)])  # (N+1,)
    correct = neg_below + (y.sum() - pos_below)  # (N+1,) threshold between s[k-1] and s[k]
    valid = np.ones(n + 1, dtype=bool)
    valid[1:n] = s[1:] != s[:-1]  # a cut inside a run of equal scores is not a threshold
    k = int(np.argmax(np.where(valid, correct, -1)))
    lo = s[k - 1] if k > 0 else s[0] - 1.0
    hi = s[k] if k < n else s[-1] + 1.0
    return float((lo + hi) / 2), float(correct[k] / n)


def roc(scores: np.ndarray, issame: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """ROC over every distinct score: (fpr, tpr, thresholds), thresholds descending.

    Point i predicts "same" for ``score >= thresholds[i]``; the first point (threshold +inf)
    accepts nothing.
    """
    s = np.asarray(scores, dtype=np.float64)  # (N,)
    y = np.asarray(issame, dtype=bool)  # (N,)
    order = np.argsort(-s, kind="stable")
    s, y = s[order], y[order]
    last = np.r_[s[1:] != s[:-1], True]  # last index of each run of equal scores
    tp = np.cumsum(y)[last]  # (T,)
    fp = np.cumsum(~y)[last]  # (T,)
    n_pos, n_neg = max(int(y.sum()), 1), max(int((~y).sum()), 1)
    fpr = np.r_[0.0, fp / n_neg]  # (T+1,)
    tpr = np.r_[0.0, tp / n_pos]  # (T+1,)
    return fpr, tpr, np.r_[np.inf, s[last]]


def tar_at_far(fpr: np.ndarray, tpr: np.ndarray, far: float) -> float:
    """Largest TAR among ROC points with FAR <= ``far``."""
    ok = fpr <= far + 1e-12
    return float(tpr[ok].max()) if ok.any() else 0.0


def default_folds(n: int, n_folds: int = 10) -> np.ndarray:
    """Fold index of each of ``n`` pairs: ``n_folds`` equal consecutive blocks."""
    return (np.arange(n) * n_folds) // max(n, 1)


def evaluate_scores(scores: np.ndarray, issame: np.ndarray, folds: np.ndarray | None = None) -> VerificationResult:
    """:func:`evaluate_pairs` on precomputed similarity scores (N,)."""
    s = np.asarray(scores, dtype=np.float64)  # (N,)
    y = np.asarray(issame, dtype=bool)  # (N,)
    if s.shape != y.shape or s.ndim != 1 or len(s) == 0:
        raise ValueError(f"scores {s.shape} and issame {y.shape} must be equal non-empty vectors")
    f = default_folds(len(s)) if folds is None else np.asarray(folds)
    if f.shape != s.shape:
        raise ValueError(f"folds {f.shape} must match the {len(s)} pairs")
    accs, thrs = [], []
    for k in np.unique(f):
        test = f == k
        train = ~test if (~test).any() else test  # one fold only: threshold from itself
        thr, _ = best_threshold(s[train], y[train])
        accs.append(float(((s[test] >= thr) == y[test]).mean()))
        thrs.append(thr)
    fpr, tpr, thresholds = roc(s, y)
    trapz = getattr(np, "trapezoid", None) or np.trapz
    auc = float(trapz(tpr, fpr)) if 0 < y.sum() < len(y) else float("nan")  # needs both classes
    return VerificationResult(
        accuracy=float(np.mean(accs)), accuracy_std=float(np.std(accs)),
        fold_accuracies=accs, fold_thresholds=thrs, best_threshold=best_threshold(s, y)[0],
        tar_at_far={far: tar_at_far(fpr, tpr, far) for far in FARS}, auc=auc,
        n_pairs=len(s), n_same=int(y.sum()), fpr=fpr, tpr=tpr, thresholds=thresholds,
    )


def evaluate_pairs(emb1: np.ndarray, emb2: np.ndarray, issame: np.ndarray,
                   folds: np.ndarray | None = None) -> VerificationResult:
    """Verification accuracy (10-fold), TAR@FAR and ROC of N embedding pairs.

    Args:
        emb1: (N, D) embeddings of the first image of each pair (normalised here).
        emb2: (N, D) embeddings of the second image.
        issame: (N,) bool, True for same-identity pairs.
        folds: (N,) fold index per pair; default 10 equal consecutive folds (LFW order).

    Returns:
        A :class:`VerificationResult`.
    """
    e1, e2 = np.asarray(emb1), np.asarray(emb2)
    if e1.shape != e2.shape or e1.ndim != 2:
        raise ValueError(f"emb1 {e1.shape} and emb2 {e2.shape} must both be (N, D)")
    return evaluate_scores(pair_scores(e1, e2), issame, folds)


def identification_rank1(gallery: np.ndarray, gallery_labels: np.ndarray,
                         probes: np.ndarray, probe_labels: np.ndarray) -> float:
    """Rank-1 identification rate; the gallery holds one mean normalised feature per identity.

    Args:
        gallery: (G, D) gallery embeddings; their per-label means (after L2 norm) are the templates.
        gallery_labels: (G,) identity of each gallery embedding.
        probes: (P, D) probe embeddings.
        probe_labels: (P,) true identity of each probe (probes of identities absent from the
            gallery count as misses).
    """
    g, gl = l2_normalize(gallery), np.asarray(gallery_labels)
    ids = np.unique(gl)
    templates = l2_normalize(np.stack([g[gl == i].mean(0) for i in ids]))  # (I, D)
    sims = l2_normalize(probes) @ templates.T  # (P, I)
    return float((ids[sims.argmax(1)] == np.asarray(probe_labels)).mean())


def split_gallery(labels: np.ndarray, per_id: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Index arrays (gallery, probe): the first ``per_id`` samples of each identity that has
    more than ``per_id`` samples go to the gallery, the rest are probes."""
    labels = np.asarray(labels)
    gal, probe = [], []
    for lab in np.unique(labels):
        idx = np.flatnonzero(labels == lab)
        if len(idx) > per_id:
            gal.extend(idx[:per_id])
            probe.extend(idx[per_id:])
    return np.array(gal, dtype=int), np.array(probe, dtype=int)
