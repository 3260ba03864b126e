"""The Quality tab's EDC panel shows exactly the curves and areas of the result files it finds."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from cqa_core.evaluation.edc import edc
from workbench.views.common import Messages
from workbench.views.edc import EDCPanel


def _result(pairs: str, shift: float) -> dict:
    rng = np.random.default_rng(1)
    y = np.r_[np.ones(200, bool), np.zeros(200, bool)]
    s = np.where(y, rng.normal(0.5 + shift, 0.2, 400), rng.normal(0.0, 0.2, 400))
    res = edc(s, y, {"qan": np.where(y, s, 0), "norm": rng.random(400)}, fmrs=(1e-2, 1e-1), random_draws=3)
    return {"data": "lfw", "protocol": "edc", "edc_pairs": pairs, **res}


def test_panel_shows_the_files_curves(tmp_path: Path) -> None:
    results = {"verify": _result("verify", 0.0), "masked-m2n": _result("masked-m2n", -0.2)}
    for name, res in results.items():
        (tmp_path / f"edc_lfw_{name}.json").write_text(json.dumps(res))
    (tmp_path / "edc_other.json").write_text(json.dumps({"protocol": "verify"}))  # not an EDC result: ignored
    panel = EDCPanel(Messages(), tmp_path)
    assert list(panel.pairs.options) == ["lfw masked-m2n", "lfw verify"]
    for key, pairs in (("lfw verify", "verify"), ("lfw masked-m2n", "masked-m2n")):
        for fmr in ("0.01", "0.1"):
            panel.pairs.value, panel.fmr.value = key, fmr
            row = results[pairs]["fmr"][fmr]
            assert [list(t.y) for t in panel.figure.data] == [row["curves"][n]["fnmr"] for n in ("qan", "norm", "random")]
            assert f"{row['curves']['qan']['area']:.4f}" in panel.areas.value
            assert f"{row['curves']['norm']['area']:.4f}" in panel.areas.value
            assert pairs in panel.figure.layout.title.text and fmr in panel.figure.layout.title.text


def test_no_results_is_a_note_not_an_error(tmp_path: Path) -> None:
    panel = EDCPanel(Messages(), tmp_path / "nothing")
    assert "no EDC results" in panel.areas.value and "cqa eval --protocol edc" in panel.areas.value
