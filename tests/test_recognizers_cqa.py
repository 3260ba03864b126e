"""CQA-Face as a Recognizer: today's analysis, number for number; the spec loader; the registry's verdicts.

The pinned numbers were printed by the analysis as it was before recognizers existed (commit 8066c92,
``analyse(load_default(), a, b, methods=("gradcam", "ig", "occlusion"), detector=CenterDetector())``
on LFW's Aaron_Peirsol 0001 / 0002). Occlusion's map is now the similarity drop itself (captum's
attribution averaged over RGB, one third of the old RGB sum).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cqa_core.checkpoint import load_default, save_model
from cqa_core.config import ModelConfig
from cqa_core.data.align import CenterDetector
from cqa_core.explain import methods
from cqa_core.explain.analysis import Analyser, AnalysisError
from cqa_core.model import create_model
from cqa_core.recognizers.base import Preprocess, Recognizer, RecognizerError
from cqa_core.recognizers.cqa import from_cqa
from cqa_core.recognizers.load import load_recognizer

TODAY = {"similarity": 0.7375129461288452, "quality": [0.919424831867218, 0.9263073801994324, 0.8949339389801025,
         0.885096549987793], "norm": 22.48686981201172, "cal": 0.09529062360525131, "gradcam_sum": 2577.365234375,
         "ig_sum": 0.7233042120933533, "occlusion_sum": 637.545654296875, "gradcam_max_at": 2664}


@pytest.mark.data
def test_the_default_model_as_a_recognizer_gives_today_s_numbers(lfw_root):
    a, b = (str(lfw_root / "Aaron_Peirsol" / f"Aaron_Peirsol_000{i}.jpg") for i in (1, 2))
    model = load_default()
    for given in (model, from_cqa(model)):  # the model itself, or wrapped: the same analysis
        fa = Analyser()(given, a, b, methods=("gradcam", "ig", "occlusion"), detector=CenterDetector())
        assert fa.kind == "cqa-face" and fa.branches
        assert fa.similarity == pytest.approx(TODAY["similarity"], abs=1e-5)
        np.testing.assert_allclose(fa.quality, TODAY["quality"], atol=1e-5)
        assert fa.embedding_norm == pytest.approx(TODAY["norm"], abs=1e-4)
        assert fa.cal == pytest.approx(TODAY["cal"], abs=1e-6)
        assert float(fa.maps["gradcam"].sum()) == pytest.approx(TODAY["gradcam_sum"], abs=1e-2)
        assert int(np.argmax(fa.maps["gradcam"])) == TODAY["gradcam_max_at"]
        assert float(fa.maps["ig"].sum()) == pytest.approx(TODAY["ig_sum"], abs=1e-3)  # adds up to the gap
        assert float(fa.maps["occlusion"].sum()) == pytest.approx(TODAY["occlusion_sum"] / 3, abs=1e-2)


def test_a_plain_recognizer_gets_embeddings_similarity_and_only_the_maps_it_supports():
    # a black-box "recognizer" whose embedding is the mean colour of two halves of the chip
    def halves(chips: np.ndarray) -> np.ndarray:
        c = chips.astype(np.float32) / 255.0
        return np.concatenate([c[:, :, :56].mean(axis=(1, 2)), c[:, :, 56:].mean(axis=(1, 2))], axis=1) + 0.1

    rec = Recognizer("halves", "torch", Preprocess(), embed_fn=halves)
    rng = np.random.default_rng(0)
    a, b = (rng.integers(0, 256, (112, 112, 3), dtype=np.uint8) for _ in range(2))
    fa = Analyser()(rec, a, b, methods=("occlusion",))
    ea, eb = halves(a[None])[0], halves(b[None])[0]
    assert fa.similarity == pytest.approx(float(ea @ eb / np.linalg.norm(ea) / np.linalg.norm(eb)), abs=1e-6)
    assert not fa.branches and fa.quality is None and fa.decomposition is None and fa.kind == "torch"
    assert fa.maps["occlusion"].shape == (112, 112) and fa.other.maps["occlusion"].shape == (112, 112)
    with pytest.raises(AnalysisError, match="similarity Grad-CAM needs gradients .* halves is torch, .* black-box"):
        Analyser()(rec, a, b, methods=("gradcam",))
    assert [m.name for m in methods.available(rec)] == ["occlusion", "rise"]
    cqa = from_cqa(create_model(ModelConfig(stem="light", branches=2)))
    assert {"attention", "gradcam", "ig", "occlusion", "rise", "GradCAM"} <= {m.name for m in methods.available(cqa)}


def test_load_recognizer_reads_each_kind_of_file_and_refuses_the_rest(tmp_path):
    path = save_model(tmp_path / "b2.safetensors", create_model(ModelConfig(stem="light", branches=2)))
    rec = load_recognizer(str(path))
    assert rec.kind == "cqa-face" and rec.cqa.config.branches == 2 and rec.name == "b2.safetensors"
    save_model(tmp_path / "run" / "model.safetensors", create_model(ModelConfig(stem="light", branches=3)))
    assert load_recognizer(str(tmp_path / "run")).cqa.config.branches == 3  # a run folder holding one
    with pytest.raises(RecognizerError, match="model not found: .*nope.onnx"):
        load_recognizer(str(tmp_path / "nope.onnx"))
    (tmp_path / "x.h5").write_bytes(b"\x00")
    with pytest.raises(RecognizerError, match="unknown model file type '.h5'"):
        load_recognizer(str(tmp_path / "x.h5"))
    pickled = tmp_path / "full.pth"
    torch.save(torch.nn.Linear(2, 2), pickled)  # a whole pickled module, not a state dict
    with pytest.raises(RecognizerError, match="pickled model, not a state dict"):
        load_recognizer(str(pickled))
    default = load_recognizer("default")
    assert default.branches and default.whitebox and default.layer == "model.stem"
