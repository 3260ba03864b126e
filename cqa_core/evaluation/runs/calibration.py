"""Calibrated confidence: what a cosine means, learnt from a reference run's genuine and impostor pairs.

    cal = load_calibration("runs/cqa-lfw")          # fitted once, kept in the run's calibration.json
    cal.probability(0.61), cal.likelihood_ratio(0.61)
    print(verdict_line(cal, 0.61))    # same person, 0.97 (calibrated on LFW, 6000 pairs; platt; ...) ...

Method: **Platt scaling** by default: a logistic regression of "same person" on the cosine
(scikit-learn ``LogisticRegression``). Chosen because it is monotone and smooth, and gives a
finite likelihood ratio everywhere, the form forensic face comparison reports in (logistic-regression
calibration of scores to likelihood ratios). ``method="isotonic"`` (scikit-learn
``IsotonicRegression``) is the non-parametric alternative: it follows the data more closely but is
a step function, and at its ends it says 0 or 1.

A probability is bounded to ``[1 / (N + 2), 1 - 1 / (N + 2)]`` for a reference set of N pairs: N
pairs cannot support more certainty than that. The likelihood ratio is the posterior odds over the
reference set's prior odds (genuine / impostor pairs): ``LR = p / (1 - p) / (n_genuine / n_impostor)``,
so it does not depend on how many pairs of each kind the reference set held.

The reliability diagram and the expected calibration error (ECE) are measured on held-out folds:
each fold's probabilities come from a calibration fitted on the other folds of the same run.
Applying a saved calibration needs numpy only; fitting one needs scikit-learn.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from cqa_core.evaluation.runs.store import Run, RunError, runs_extra

CALIBRATION_FILE = "calibration.json"
METHODS = {
    "platt": "Platt scaling (logistic regression on the cosine, scikit-learn LogisticRegression)",
    "isotonic": "isotonic regression on the cosine (scikit-learn IsotonicRegression)",
}
DEFAULT_METHOD = "platt"
DATA_LABELS = {"lfw": "LFW", "celeba299": "CelebA-299"}


@dataclass
class Calibration:
    """A fitted calibration of one model's cosine, and how well it holds on held-out folds.

    Attributes:
        method: "platt" | "isotonic" (:data:`METHODS`).
        reference: the reference set, as printed ("LFW, 6000 pairs").
        model: the model's name; ``digest`` its weights digest (a calibration is of one model).
        threshold: the reference run's accuracy-maximising threshold on all its pairs.
        n_genuine: same-person pairs of the reference set; ``n_impostor`` different-person pairs.
        params: platt {"a", "b"} (p = sigmoid(a s + b)); isotonic {"x", "y"} (p = interp(s, x, y)).
        ece: expected calibration error of the held-out-fold probabilities.
        reliability: its bins: lo, hi, count, mean_probability, fraction_same.
    """

    method: str
    reference: str
    model: str
    digest: str
    threshold: float
    n_genuine: int
    n_impostor: int
    params: dict[str, Any]
    ece: float = float("nan")
    reliability: list[dict[str, float]] = field(default_factory=list)

    def probability(self, scores: np.ndarray | float) -> np.ndarray:
        """P(same person | cosine), bounded by the reference set's size."""
        s = np.asarray(scores, np.float64)
        p = _apply(self.method, self.params, s)
        eps = 1.0 / (self.n_genuine + self.n_impostor + 2)
        return np.clip(p, eps, 1 - eps)

    def likelihood_ratio(self, scores: np.ndarray | float) -> np.ndarray:
        """P(cosine | same) / P(cosine | different): posterior odds over the reference set's prior odds."""
        p = self.probability(scores)
        return p / (1 - p) / (self.n_genuine / self.n_impostor)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "method_name": METHODS[self.method]}

    @staticmethod
    def from_dict(d: dict[str, Any]) -> Calibration:
        return Calibration(**{k: v for k, v in d.items() if k in Calibration.__dataclass_fields__})


def _apply(method: str, params: dict[str, Any], s: np.ndarray) -> np.ndarray:
    if method == "platt":
        return 1.0 / (1.0 + np.exp(-(params["a"] * s + params["b"])))
    return np.interp(s, params["x"], params["y"])


def fit_params(scores: np.ndarray, same: np.ndarray, method: str = DEFAULT_METHOD) -> dict[str, Any]:
    """The calibration's parameters fitted on (scores (N,), same (N,) bool) with scikit-learn."""
    if method not in METHODS:
        raise ValueError(f"unknown calibration {method!r}; choose from {', '.join(METHODS)}")
    y = np.asarray(same, bool)
    if y.all() or not y.any():
        raise ValueError("calibration needs both same-person and different-person pairs")
    s = np.asarray(scores, np.float64)
    if method == "platt":
        linear = runs_extra("sklearn.linear_model")
        mu, sd = float(s.mean()), float(s.std()) or 1.0  # fitted on standardised scores: fewer solver steps
        lr = linear.LogisticRegression(C=1e6, tol=1e-8, max_iter=10_000).fit(((s - mu) / sd)[:, None], y)  # C large: MLE
        a, b = float(lr.coef_[0, 0]), float(lr.intercept_[0])
        return {"a": a / sd, "b": b - a * mu / sd}
    iso = runs_extra("sklearn.isotonic").IsotonicRegression(out_of_bounds="clip", y_min=0.0, y_max=1.0).fit(s, y.astype(np.float64))
    return {"x": iso.X_thresholds_.tolist(), "y": iso.y_thresholds_.tolist()}


def reliability(prob: np.ndarray, same: np.ndarray, bins: int = 10) -> tuple[float, list[dict[str, float]]]:
    """(ECE, bins) of probabilities against outcomes: ``bins`` equal-width bins over [0, 1].

    ECE = sum over bins of (pairs in bin / all pairs) * |fraction same - mean probability|.
    """
    p, y = np.asarray(prob, np.float64), np.asarray(same, bool)
    edges = np.linspace(0, 1, bins + 1)
    which = np.clip(np.digitize(p, edges[1:-1]), 0, bins - 1)  # (N,) bin of each pair
    rows, ece = [], 0.0
    for b in range(bins):
        m = which == b
        n = int(m.sum())
        row = {"lo": float(edges[b]), "hi": float(edges[b + 1]), "count": n,
               "mean_probability": float(p[m].mean()) if n else float("nan"),
               "fraction_same": float(y[m].mean()) if n else float("nan")}
        if n:
            ece += n / len(p) * abs(row["fraction_same"] - row["mean_probability"])
        rows.append(row)
    return float(ece), rows


def held_out_probabilities(scores: np.ndarray, same: np.ndarray, folds: np.ndarray,
                           method: str = DEFAULT_METHOD) -> np.ndarray:
    """Each fold's probabilities from a calibration fitted on the other folds: (N,)."""
    s, y, f = np.asarray(scores, np.float64), np.asarray(same, bool), np.asarray(folds)
    out = np.empty(len(s))
    ks = np.unique(f)
    if len(ks) < 2:
        raise ValueError("held-out calibration needs at least 2 folds")
    for k in ks:
        test = f == k
        out[test] = _apply(method, fit_params(s[~test], y[~test], method), s[test])
    return out


def reference_label(meta: dict[str, Any]) -> str:
    """How a run is named as a reference set: "LFW, 6000 pairs", "LFW masked-m2n, 6000 pairs"."""
    data = DATA_LABELS.get(meta["data"], meta["data"])
    proto = "" if meta["protocol"] == "verify" else f" {meta['protocol']}"
    return f"{data}{proto}, {meta['n_pairs']} pairs"


def fit_calibration(folder: str | os.PathLike, method: str = DEFAULT_METHOD, bins: int = 10) -> Calibration:
    """A calibration from a run's pairs (``score``, ``same``, ``fold``; nothing else is read)."""
    pq = runs_extra("pyarrow.parquet")
    run = Run(folder)
    t = pq.read_table(run.pairs_path, columns=["score", "same", "fold"])
    s, y, f = (t.column(c).to_numpy() for c in ("score", "same", "fold"))
    params = fit_params(s, y, method)
    ece, rows = reliability(held_out_probabilities(s, y, f, method), y, bins)
    m = run.meta
    return Calibration(method, reference_label(m), m["model"]["name"], m["model"]["digest"],
                       float(m["best_threshold"]), int(y.sum()), int((~y).sum()), params, ece, rows)


def save_calibration(folder: str | os.PathLike, method: str = DEFAULT_METHOD) -> Calibration:
    """Fit a run's calibration and write it beside the run as ``calibration.json``."""
    cal = fit_calibration(folder, method)
    (Path(folder) / CALIBRATION_FILE).write_text(json.dumps(cal.to_dict(), indent=2))
    return cal


def read_calibration(folder: str | os.PathLike) -> Calibration | None:
    """A run's saved ``calibration.json``, or None when it has none (nothing is fitted: numpy only)."""
    path = Path(folder) / CALIBRATION_FILE
    return Calibration.from_dict(json.loads(path.read_text())) if path.is_file() else None


def load_calibration(folder: str | os.PathLike, digest: str | None = None) -> Calibration:
    """A run's calibration (fitted and saved on first use); ``digest`` checks it is of that model."""
    cal = read_calibration(folder) or save_calibration(folder)
    if digest is not None and cal.digest != digest:
        raise RunError(f"the reference run {folder} was scored by {cal.model} (weights {cal.digest}), "
                       f"not by this model (weights {digest}): its calibration does not apply")
    return cal


def find_calibration(runs_dir: str | os.PathLike, digest: str) -> Calibration | None:
    """The saved calibration of the model whose weights are ``digest`` in a folder of runs, or None.

    Only calibrations already saved (``cqa eval --out`` saves one) are read: no fitting here, so a
    viewer needs numpy only. Of several, a clean verification run (``verify``) first, then the newest.
    """
    found = []
    for path in Path(runs_dir).glob(f"*/{CALIBRATION_FILE}"):
        try:
            cal = read_calibration(path.parent)
            protocol = json.loads((path.parent / "run.json").read_text()).get("protocol")
        except (OSError, ValueError, KeyError, TypeError):
            continue  # a half-written or foreign run is not a reference
        if cal is not None and cal.digest == digest:
            found.append((protocol == "verify", path.stat().st_mtime, cal))
    return max(found, key=lambda t: t[:2])[2] if found else None


def verdict_line(cal: Calibration, score: float) -> str:
    """The verdict as printed beside a pair: threshold, calibrated probability, likelihood ratio."""
    same = score >= cal.threshold
    p = float(cal.probability(score))
    lr = float(cal.likelihood_ratio(score))
    word, conf = ("same person", p) if same else ("different people", 1 - p)
    shown = "> 0.999" if conf > 0.999 else f"{conf:.3g}"  # bounded, never a printed certainty
    return (f"{word}, {shown} (calibrated on {cal.reference}; {cal.method}; likelihood ratio {lr:.3g}); "
            f"cosine {score:.4f} {'>=' if same else '<'} threshold {cal.threshold:.4f}")
