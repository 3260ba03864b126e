"""Calibrated confidence: Platt / isotonic fits, likelihood ratios and held-out reliability.

Scores drawn from two Gaussians of equal spread: genuine N(0.6, 0.1), impostor N(0.1, 0.1). Then
the log likelihood ratio is linear in the score, log LR(s) = (mu_g - mu_i) / sigma^2 * (s - (mu_g + mu_i) / 2)
= 50 (s - 0.35), so Platt scaling must find slope 50 and LR(0.35) = 1 whatever the class balance.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from cqa_core.evaluation.runs.calibration import (
    Calibration,
    held_out_probabilities,
    load_calibration,
    reliability,
    verdict_line,
)
from cqa_core.evaluation.runs.store import RunError
from cqa_core.evaluation.runs.synthetic import synthetic_run

pytest.importorskip("sklearn", reason="the runs extra (scikit-learn) is not installed")
pq = pytest.importorskip("pyarrow.parquet", reason="the runs extra (pyarrow) is not installed")
from cqa_core.evaluation.runs.calibration import fit_params  # noqa: E402


def gaussians(n_genuine: int, n_impostor: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    s = np.r_[rng.normal(0.6, 0.1, n_genuine), rng.normal(0.1, 0.1, n_impostor)]
    return s, np.r_[np.ones(n_genuine, bool), np.zeros(n_impostor, bool)]


def cal_of(s: np.ndarray, y: np.ndarray, method: str) -> Calibration:
    return Calibration(method, "test set", "m", "d", 0.35, int(y.sum()), int((~y).sum()), fit_params(s, y, method))


@pytest.mark.parametrize("n_genuine,n_impostor", [(10000, 10000), (4000, 16000)])
def test_platt_recovers_the_gaussian_likelihood_ratio(n_genuine, n_impostor):
    s, y = gaussians(n_genuine, n_impostor)
    cal = cal_of(s, y, "platt")
    assert cal.params["a"] == pytest.approx(50, rel=0.06)
    # prior odds are divided out: LR(0.35) = 1 and LR(0.45) = e^5 for both class balances
    assert float(cal.likelihood_ratio(0.35)) == pytest.approx(1.0, rel=0.15)
    assert np.log(float(cal.likelihood_ratio(0.45))) == pytest.approx(5.0, abs=0.4)
    p = cal.probability(np.array([0.0, 0.35, 0.7]))
    prior = n_genuine / (n_genuine + n_impostor)
    assert p[0] < 0.01 and p[1] == pytest.approx(prior, abs=0.05) and p[2] > 0.99


def test_isotonic_is_monotone_and_bounded_by_the_reference_size():
    s, y = gaussians(300, 300, seed=1)
    cal = cal_of(s, y, "isotonic")
    grid = np.linspace(-0.5, 1.2, 200)
    p = cal.probability(grid)
    assert (np.diff(p) >= 0).all()
    assert p.min() == pytest.approx(1 / 602) and p.max() == pytest.approx(1 - 1 / 602)  # 600 pairs: never 0 or 1
    assert np.isfinite(cal.likelihood_ratio(grid)).all()


def test_reliability_and_ece_by_hand():
    # 10 pairs all said 0.8, 6 of them genuine: one bin, |0.6 - 0.8| = 0.2
    ece, rows = reliability(np.full(10, 0.8), np.arange(10) < 6)
    assert ece == pytest.approx(0.2)
    assert [r["count"] for r in rows] == [0] * 8 + [10, 0]
    # two bins: 0.1 said, 1 of 4 genuine (|0.25 - 0.1|); 0.9 said, 4 of 4 genuine (|1 - 0.9|)
    ece, _ = reliability(np.r_[np.full(4, 0.1), np.full(4, 0.9)], np.r_[[True, False, False, False], [True] * 4])
    assert ece == pytest.approx(0.5 * 0.15 + 0.5 * 0.1)


def test_held_out_folds_are_well_calibrated_for_gaussians():
    s, y = gaussians(5000, 5000, seed=2)
    folds = np.random.default_rng(0).integers(0, 10, len(s))
    for method in ("platt", "isotonic"):
        ece, _ = reliability(held_out_probabilities(s, y, folds, method), y)
        assert ece < 0.02, (method, ece)


def test_a_run_is_calibrated_and_the_verdict_names_its_reference(tmp_path):
    run = synthetic_run(tmp_path / "ref", pairs=4000, faces=1000, seed=4)
    cal = load_calibration(run, "synthetic:0.0")
    saved = json.loads((run / "calibration.json").read_text())
    assert saved["method"] == "platt" and "LogisticRegression" in saved["method_name"]
    assert cal.reference == "synthetic:4, 4000 pairs" and len(cal.reliability) == 10 and 0 <= cal.ece < 0.05
    line = verdict_line(cal, 0.9)
    # bounded by the reference size: 4000 pairs support 1 - 1/4002 at most
    assert line.startswith("same person, > 0.999 (calibrated on synthetic:4, 4000 pairs; platt; likelihood ratio ")
    assert line.endswith(f"cosine 0.9000 >= threshold {cal.threshold:.4f}")
    assert verdict_line(cal, -0.2).startswith("different people, > 0.999 (")
    mid = verdict_line(cal, cal.threshold + 0.01)
    p = float(cal.probability(cal.threshold + 0.01))
    assert mid.startswith(f"same person, {p:.3g} (") and 0.3 < p < 0.8
    with pytest.raises(RunError, match="not by this model"):
        load_calibration(run, "another model's digest")


def test_one_class_only_cannot_be_calibrated():
    with pytest.raises(ValueError, match="both same-person and different-person"):
        fit_params(np.array([0.1, 0.2]), np.array([True, True]))
