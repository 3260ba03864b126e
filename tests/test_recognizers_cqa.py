"""CQA-Face as a Recognizer: today's analysis, number for number; the spec loader; the registry's verdicts.

The pinned numbers were printed by the analysis as it was before recognizers existed (commit 8066c92,
``analyse(load_default(), a, b, methods=("gradcam", "ig", "occlusion"), detector=CenterDetector())``
on LFW's Aaron_Peirsol 0001 / 0002). Occlusion's map is now the similarity drop itself (captum's
attribution averaged over RGB, one third of the old RGB sum). ``BEFORE_READOUT`` was printed by
commit dc34dd0, the last in which CQA-Face took its own road through the analysis (``Recognizer.cqa``);
the one path every recognizer takes now must give the same numbers.
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
BEFORE_READOUT = {"decomposition_diagonal": [0.2291869968175888, 0.338591992855072, 0.06954099982976913, 0.24558000266551971, 0.2253199964761734], "decomposition_sum": 0.7375119830685435, "leave_one_out": [0.7364935874938965, 0.7531589865684509, 0.7387915253639221, 0.7264156937599182], "relation_sum": 57.44712829589844, "attention_sum": 14222.40625, "rise_sum": 112.77423095703125, "mean_iou": 0.17471091449260712, "entropy": [0.8657272458076477, 0.8929029703140259, 0.748855471611023, 0.9603649377822876], "other_quality": [0.9262325167655945, 0.96595698595047, 0.908892810344696, 0.9032473564147949], "other_gradcam_sum": 2005.5810546875, "nose_share": [0.003881750861182809, 0.01987241953611374, 0.019919471815228462, 0.03220636397600174]}


@pytest.mark.data
def test_the_default_model_as_a_recognizer_gives_today_s_numbers(lfw_root):
    a, b = (str(lfw_root / "Aaron_Peirsol" / f"Aaron_Peirsol_000{i}.jpg") for i in (1, 2))
    model = load_default()
    for given in (model, from_cqa(model)):  # the model itself, or wrapped: the same analysis
        pa = Analyser()(given, a, b, methods=("gradcam", "ig", "occlusion", "rise"), detector=CenterDetector())
        fa, br = pa.a, pa.a.branches
        assert fa.kind == "cqa-face" and br is not None and pa.branches is not None
        assert pa.similarity == pytest.approx(TODAY["similarity"], abs=1e-5)
        np.testing.assert_allclose(br.quality, TODAY["quality"], atol=1e-5)
        assert fa.embedding_norm == pytest.approx(TODAY["norm"], abs=1e-4)
        assert br.cal == pytest.approx(TODAY["cal"], abs=1e-6)
        assert float(pa.maps["gradcam"][0].sum()) == pytest.approx(TODAY["gradcam_sum"], abs=1e-2)
        assert int(np.argmax(pa.maps["gradcam"][0])) == TODAY["gradcam_max_at"]
        assert float(pa.maps["ig"][0].sum()) == pytest.approx(TODAY["ig_sum"], abs=1e-3)  # adds up to the gap
        assert float(pa.maps["occlusion"][0].sum()) == pytest.approx(TODAY["occlusion_sum"] / 3, abs=1e-2)
        was = BEFORE_READOUT
        dec = pa.branches.decomposition
        np.testing.assert_allclose(np.diag(dec), was["decomposition_diagonal"], atol=1e-5)
        assert float(dec.sum()) == pytest.approx(was["decomposition_sum"], abs=1e-4)
        assert float(dec.sum()) == pytest.approx(pa.similarity, abs=1e-5)  # the terms add up to the cosine
        np.testing.assert_allclose(pa.branches.leave_one_out, was["leave_one_out"], atol=1e-5)
        assert float(br.relation.sum()) == pytest.approx(was["relation_sum"], abs=1e-3)
        assert float(br.attention.sum()) == pytest.approx(was["attention_sum"], rel=1e-5)
        assert float(pa.maps["rise"][0].sum()) == pytest.approx(was["rise_sum"], abs=1e-2)
        assert br.mean_iou == pytest.approx(was["mean_iou"], abs=1e-6)
        np.testing.assert_allclose(br.entropy, was["entropy"], atol=1e-6)
        np.testing.assert_allclose(br.region_shares["nose"], was["nose_share"], atol=1e-6)
        np.testing.assert_allclose(pa.b.branches.quality, was["other_quality"], atol=1e-5)
        assert float(pa.maps["gradcam"][1].sum()) == pytest.approx(was["other_gradcam_sum"], abs=1e-2)


def test_a_plain_recognizer_gets_embeddings_similarity_and_only_the_maps_it_supports():
    # a black-box "recognizer" whose embedding is the mean colour of two halves of the chip
    def halves(chips: np.ndarray) -> np.ndarray:
        c = chips.astype(np.float32) / 255.0
        return np.concatenate([c[:, :, :56].mean(axis=(1, 2)), c[:, :, 56:].mean(axis=(1, 2))], axis=1) + 0.1

    rec = Recognizer("halves", "torch", Preprocess(), embed_fn=halves)
    rng = np.random.default_rng(0)
    a, b = (rng.integers(0, 256, (112, 112, 3), dtype=np.uint8) for _ in range(2))
    pa = Analyser()(rec, a, b, methods=("occlusion",))
    ea, eb = halves(a[None])[0], halves(b[None])[0]
    assert pa.similarity == pytest.approx(float(ea @ eb / np.linalg.norm(ea) / np.linalg.norm(eb)), abs=1e-6)
    assert pa.a.branches is None and pa.branches is None and pa.a.kind == "torch"
    assert pa.maps["occlusion"].shape == (2, 112, 112)
    with pytest.raises(AnalysisError, match="similarity Grad-CAM needs gradients .* halves is torch, .* black-box"):
        Analyser()(rec, a, b, methods=("gradcam",))
    assert [m.name for m in methods.available(rec)] == ["occlusion", "rise", "corr-rise"]
    cqa = from_cqa(create_model(ModelConfig(stem="light", branches=2)))
    names = [m.name for m in methods.available(cqa)]
    assert names[:5] == ["attention", "gradcam", "ig", "occlusion", "rise"]  # registration order
    assert "GradCAMPlusPlus" in names and "GradCAM" not in names  # one Grad-CAM: ours


def test_load_recognizer_reads_each_kind_of_file_and_refuses_the_rest(tmp_path):
    path = save_model(tmp_path / "b2.safetensors", create_model(ModelConfig(stem="light", branches=2)))
    rec = load_recognizer(str(path))
    assert rec.kind == "cqa-face" and rec.readout.count == 2 and rec.name == "b2.safetensors"
    save_model(tmp_path / "run" / "model.safetensors", create_model(ModelConfig(stem="light", branches=3)))
    assert load_recognizer(str(tmp_path / "run")).readout.count == 3  # a run folder holding one
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
    assert default.readout is not None and default.whitebox and default.layer == "model.stem"
