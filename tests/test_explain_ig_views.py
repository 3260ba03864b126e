"""A map method's checks (IG's completeness) carried by ``PairAnalysis.checks`` and shown, in plain words,
beside the map in the Face and Pair views."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cqa_core.explain import Analyser
from cqa_core.explain.methods import ig_check
from cqa_core.explain.result import Check
from tests.support.galleries import noise_gallery


def face(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (112, 112, 3), dtype=np.uint8)


def test_analysis_carries_the_ig_check_of_both_faces(calibrated_model):
    a, b = face(1), face(2)
    pa = Analyser()(calibrated_model, a, b, methods=("ig",))
    ca, cb = pa.checks["ig"]
    assert isinstance(ca, Check) and isinstance(cb, Check)
    with torch.no_grad():
        xa, xb = (torch.from_numpy(x).permute(2, 0, 1)[None].float() / 127.5 - 1 for x in (a, b))
        ea, eb, e0 = (calibrated_model(x).embedding for x in (xa, xb, torch.zeros_like(xa)))
        gap_a = (torch.cosine_similarity(ea, eb) - torch.cosine_similarity(e0, eb)).item()  # cos(a, b) - cos(grey, b)
    assert ca.values["gap"] == pytest.approx(gap_a, abs=1e-5)
    assert ca.values["delta"] == pytest.approx(float(pa.maps["ig"][0].sum()) - gap_a, abs=1e-4)  # sum(map) - gap
    assert ca.ok and abs(ca.values["delta"]) <= 0.01 * abs(gap_a) + 1e-4
    share = 100 * float(pa.maps["ig"][0].sum()) / gap_a
    assert f"the map accounts for {share:.1f}% of the change in similarity" in ca.text
    assert Analyser()(calibrated_model, a, b, methods=("gradcam",)).checks == {}


def test_the_ig_check_reads_in_plain_words():
    good = ig_check(delta=0.001, gap=-0.25, steps=32, converged=True)  # the map sums to -0.249
    assert good.ok and good.text.startswith("the map accounts for 99.6% of the change in similarity")
    assert "(-0.250)" in good.text and "32 steps" in good.text and "NOT" not in good.text
    capped = ig_check(delta=0.05, gap=0.1, steps=256, converged=False)
    assert not capped.ok and "150.0%" in capped.text and "NOT converged" in capped.text


@pytest.fixture()
def wb(tmp_path):
    """A workbench on three synthetic 'people' and the default model."""
    from cqa_core.settings import Settings
    from workbench.start import open_workbench

    noise_gallery(tmp_path / "faces", 3)
    return open_workbench(Settings(faces=tmp_path / "faces"))


def test_face_and_pair_views_show_the_check_beside_the_map(wb):
    fe = wb.view(0)
    fe.source.value = "integrated gradients"
    assert wb.messages.last_error is None, wb.messages.widget.value
    check = wb.session.analyse(wb.current, wb.faces[wb.second.value], methods=("ig",)).checks["ig"][0]
    assert check.text in fe.ig_delta.value  # the text is plain words: escaping leaves it as it is
    fe.source.value = "similarity Grad-CAM"
    assert fe.ig_delta.value == ""  # Grad-CAM has no check
    wb.tabs.selected_index = 1
    pair = wb.view(1)
    pair.source.value = "integrated gradients"
    assert wb.messages.last_error is None, wb.messages.widget.value
    assert all("of the change in similarity" in d.value for d in pair.deltas)
    assert "integrated gradients" in pair.titles[0].value
    pair.source.value = "similarity Grad-CAM"
    assert all(d.value == "" for d in pair.deltas)
