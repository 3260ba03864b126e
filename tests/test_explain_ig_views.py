"""IG completeness carried by ``FaceAnalysis.ig`` and shown beside the IG map in the Face and Pair views."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from cqa_core.explain import Analyser
from cqa_core.explain.result import IGCheck


def face(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (112, 112, 3), dtype=np.uint8)


def test_analysis_carries_the_ig_delta_of_both_faces(calibrated_model):
    a, b = face(1), face(2)
    fa = Analyser()(calibrated_model, a, b, methods=("ig",))
    assert isinstance(fa.ig, IGCheck) and isinstance(fa.other.ig, IGCheck)
    with torch.no_grad():
        xa, xb = (torch.from_numpy(x).permute(2, 0, 1)[None].float() / 127.5 - 1 for x in (a, b))
        ea, eb, e0 = (calibrated_model(x).embedding for x in (xa, xb, torch.zeros_like(xa)))
        gap_a = (torch.cosine_similarity(ea, eb) - torch.cosine_similarity(e0, eb)).item()  # cos(a, b) - cos(grey, b)
    assert fa.ig.gap == pytest.approx(gap_a, abs=1e-5)
    assert fa.ig.delta == pytest.approx(float(fa.maps["ig"].sum()) - gap_a, abs=1e-4)  # delta = sum(map) - gap
    assert fa.ig.converged and abs(fa.ig.delta) <= 0.01 * abs(fa.ig.gap) + 1e-4
    assert "IG delta" in fa.ig.describe() and "NOT converged" not in fa.ig.describe()
    assert "NOT converged" in fa.ig._replace(converged=False).describe()
    assert Analyser()(calibrated_model, a, b, methods=("gradcam",)).ig is None


@pytest.fixture()
def wb(tmp_path):
    """A workbench on three synthetic 'people' and the default model."""
    from cqa_core.settings import Settings
    from workbench.app import Workbench

    rng = np.random.default_rng(0)
    for i in range(3):
        d = tmp_path / "faces" / f"Person_{i}"
        d.mkdir(parents=True)
        Image.fromarray(rng.integers(0, 255, (250, 250, 3), dtype=np.uint8)).save(d / f"Person_{i}_0001.jpg")
    return Workbench(Settings(faces=tmp_path / "faces"))


def test_face_and_pair_views_show_the_ig_delta_beside_the_map(wb):
    fe = wb.view(0)
    fe.source.value = "integrated gradients"
    assert wb.messages.last_error is None, wb.messages.widget.value
    ig = wb.session.analyse(wb.current, wb.faces[wb.second.value], methods=("ig",)).ig
    assert f"{ig.delta:+.4f}" in fe.ig_delta.value and f"{ig.steps} steps" in fe.ig_delta.value
    fe.source.value = "similarity Grad-CAM"
    assert fe.ig_delta.value == ""  # only an IG map has a completeness delta
    wb.tabs.selected_index = 1
    pair = wb.view(1)
    pair.source.value = "integrated gradients"
    assert wb.messages.last_error is None, wb.messages.widget.value
    assert all("IG delta" in d.value for d in pair.deltas)
    assert "integrated gradients" in pair.titles[0].value
    pair.source.value = "similarity Grad-CAM"
    assert all(d.value == "" for d in pair.deltas)
