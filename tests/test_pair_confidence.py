"""The Pair tab's calibrated verdict: a saved calibration of the model's weights found in the runs folder."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cqa_core.evaluation.runs.calibration import Calibration, find_calibration, verdict_line
from tests.support.galleries import noise_gallery


def write_run(folder: Path, digest: str, protocol: str = "verify", a: float = 10.0, b: float = -5.0) -> Calibration:
    """A run folder holding only what a viewer reads: run.json's protocol and a saved Platt calibration."""
    folder.mkdir(parents=True)
    (folder / "run.json").write_text(json.dumps({"protocol": protocol}))
    cal = Calibration("platt", f"LFW{'' if protocol == 'verify' else ' ' + protocol}, 100 pairs", "m", digest, 0.5,
                      50, 50, {"a": a, "b": b}, 0.01, [])
    (folder / "calibration.json").write_text(json.dumps(cal.to_dict()))
    return cal


def test_find_calibration_takes_the_model_s_verify_run(tmp_path):
    write_run(tmp_path / "masked", "w1", protocol="masked-m2n", a=1.0)
    clean = write_run(tmp_path / "clean", "w1")
    write_run(tmp_path / "other", "w2", a=3.0)
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "calibration.json").write_text("{not json")
    found = find_calibration(tmp_path, "w1")
    assert found == clean  # the clean verification run, not the masked one nor another model's
    assert find_calibration(tmp_path, "w3") is None and find_calibration(tmp_path / "none", "w1") is None
    # p = sigmoid(10 * 0.6 - 5) = 0.731 at cosine 0.6, above the threshold 0.5
    assert verdict_line(found, 0.6).startswith("same person, 0.731 (calibrated on LFW, 100 pairs; platt;")


@pytest.fixture()
def wb(tmp_path):
    from cqa_core.settings import Settings
    from workbench.start import open_workbench

    noise_gallery(tmp_path / "faces", 2)
    # no data root: no LFW threshold to compute in the background (the verdict line says so)
    return open_workbench(Settings(faces=tmp_path / "faces", runs=tmp_path / "runs", data_root=tmp_path / "no-data",
                                   cache_root=tmp_path / "cache"))


def test_the_pair_tab_shows_the_calibrated_verdict_of_the_model(wb, tmp_path):
    digest = wb.session.info()["digest"]
    cal = write_run(tmp_path / "runs" / "lfw-verify", digest)
    wb.tabs.selected_index = 1
    pair = wb.view(1)
    pair.anyway.value = True  # noise photos (no face found): compare the centres anyway
    pair.refresh()
    sim = wb.session.analyse(wb.current, wb.other, methods=()).similarity
    assert wb.messages.last_error is None, wb.messages.widget.value
    text = pair.main.verdict.value
    assert "cqa-confidence" in text and verdict_line(cal, sim).split(" (")[0] in text
    assert "calibrated on LFW, 100 pairs" in text
