"""``analyse`` (one call for the workbench), its cache and errors, and ``cqa explain``."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from cqa_core.checkpoint import save_model
from cqa_core.cli import main
from cqa_core.explain import Analyser, AnalysisError, analyse
from cqa_core.explain.analysis import nbytes
from cqa_core.explain.result import FaceAnalysis


class NoFace:
    """A detector that finds nothing, so alignment uses its fixed centre affine (no MTCNN)."""

    def detect(self, img, landmarks=True):
        return None, None, None


@pytest.fixture(scope="module")
def model(calibrated_model):
    return calibrated_model


def face(seed: int, size: int = 112) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)


def test_single_face_fields(model):
    fa = Analyser()(model, face(0))
    br, b = fa.branches, 4
    assert isinstance(fa, FaceAnalysis) and fa.maps == {}  # no single-face method asked
    assert fa.align_method == "identity" and np.allclose(fa.affine, np.eye(2, 3))
    assert br.attention.shape == (b, 112, 112) and br.attention_photo.shape == (b, 112, 112)
    assert br.quality.shape == (b,) and br.relation.shape == (b, b) and fa.embedding.shape == (512,)
    assert fa.embedding_norm == pytest.approx(float(np.linalg.norm(fa.embedding)))
    assert br.cal_matrix.shape == (b, b) and 0 <= br.cal <= 0.8
    assert set(br.region_shares) == {"left_eye", "right_eye", "nose", "mouth"}
    # the dashboard's mean IoU is over branch pairs only: (sum - b ones on the diagonal) / (b^2 - b)
    assert np.allclose(np.diag(br.iou), 1.0)
    assert br.mean_iou == pytest.approx((br.iou.sum() - b) / (b * b - b))
    ovs = fa.overlays()
    assert len(ovs) == b and ovs[0].image.dtype == np.uint8 and ovs[0].quality == pytest.approx(br.quality[0])


def test_attention_is_an_ordinary_single_face_method(model):
    an = Analyser()
    fa = an(model, face(0), methods=("attention",))
    np.testing.assert_allclose(fa.maps["attention"], fa.branches.attention.max(axis=0), atol=1e-6)
    pa = an(model, face(0), face(1), methods=("attention", "gradcam"))
    assert set(pa.maps) == {"gradcam"} and "attention" in pa.a.maps and "attention" in pa.b.maps
    assert an.computed == 2  # face 0 came from the cache, its attention map with it


def test_pair_fields_and_consistency(model):
    pa = Analyser()(model, face(1), face(2), methods=("gradcam", "GradCAMPlusPlus"))
    assert pa.branches.decomposition.shape == (5, 5)
    assert pa.branches.decomposition.sum() == pytest.approx(pa.similarity, abs=1e-5)
    e_a, e_b = pa.a.embedding, pa.b.embedding
    assert pa.similarity == pytest.approx(float(e_a @ e_b / np.linalg.norm(e_a) / np.linalg.norm(e_b)), abs=1e-5)
    assert pa.branches.leave_one_out.shape == (4,)
    assert pa.maps["gradcam"].shape == pa.maps["GradCAMPlusPlus"].shape == (2, 112, 112)
    assert pa.checks == {}  # neither method checks its maps


def test_photo_is_aligned_and_maps_warp_back(model, tmp_path):
    photo = face(3, size=200)
    path = tmp_path / "photo.png"
    Image.fromarray(photo).save(path)
    fa = Analyser()(model, str(path), detector=NoFace())
    assert fa.align_method == "center" and fa.photo.shape == (200, 200, 3)
    assert fa.aligned.shape == (112, 112, 3) and fa.branches.attention_photo.shape == (4, 200, 200)
    assert fa.branches.attention_photo.max() > 0


def test_cache_hits_by_content_and_model_version(model):
    an = Analyser(maxsize=2)
    img = face(4)
    first = an(model, img)
    assert an(model, img.copy()) is first  # same bytes, same model -> cached object
    with torch.no_grad():
        model.fc.bias.add_(0.0)  # an in-place update bumps the version: new key
    assert an(model, img) is not first
    for s in range(5, 9):
        an(model, face(s))
    assert len(an) == 2  # LRU bound


def test_the_cache_is_bounded_in_bytes(model):
    one = nbytes(Analyser()(model, face(30)))  # a 112 x 112 face: chip, photo, 4 maps twice, embedding...
    assert one > 112 * 112 * 3 * 2 + 4 * 112 * 112 * 4 * 2
    an = Analyser(maxsize=100, maxbytes=int(2.5 * one))
    for s in range(30, 36):
        an(model, face(s))
    assert len(an) == 2 and an.bytes <= 2.5 * one  # 6 faces asked, the bytes keep 2


def test_a_face_map_added_later_is_counted_in_the_cache_bytes(model):
    an = Analyser()
    an(model, face(40))
    before = an.bytes
    an(model, face(40), methods=("attention",))  # same face, now with its (112, 112) float map
    assert an.computed == 1 and an.bytes >= before + 112 * 112 * 4  # the face ran once; its size grew


@pytest.mark.parametrize("bad, match", [
    ("/no/such/file.jpg", "not found"),
    (np.zeros((112, 112), np.float32), "uint8"),
    (np.zeros((112, 112, 4), np.uint8), "HxWx3"),
    (np.zeros((8, 8, 3), np.uint8), "too small"),
    (42, "cannot analyse"),
])
def test_bad_inputs_raise_plain_value_errors(model, bad, match):
    with pytest.raises(ValueError, match=match):
        analyse(model, bad)


def test_not_an_image_file(model, tmp_path):
    p = tmp_path / "notes.jpg"
    p.write_text("hello")
    with pytest.raises(ValueError):
        analyse(model, str(p))


def test_unknown_method(model):
    with pytest.raises(AnalysisError, match="unknown explanation method"):
        analyse(model, face(10), face(11), methods=("magic",))


def test_model_mode_is_restored(model):
    model.train()
    try:
        analyse(model, face(12), face(13))
        assert model.training
    finally:
        model.eval()


def test_cli_writes_pngs_and_json(model, tmp_path, capsys):
    ckpt = save_model(tmp_path / "m.safetensors", model)
    a, b = tmp_path / "a.png", tmp_path / "b.png"
    Image.fromarray(face(20)).save(a)
    Image.fromarray(face(21)).save(b)
    out = tmp_path / "out"
    assert main(["explain", str(a), str(b), "--checkpoint", str(ckpt), "--out", str(out)]) == 0
    report = json.loads((out / "analysis.json").read_text())
    assert abs(np.sum(report["decomposition"]) - report["similarity"]) < 1e-5
    assert len(report["a"]["quality"]) == 4
    for name in report["files"]:
        assert (out / name).is_file()
    assert "a_branch0.png" in report["files"] and "b_gradcam.png" in report["files"]
    assert "similarity" in capsys.readouterr().out


def test_cli_bad_image_is_a_clean_error(model, tmp_path, capsys):
    ckpt = save_model(tmp_path / "m.safetensors", model)
    assert main(["explain", str(tmp_path / "missing.png"), "--checkpoint", str(ckpt), "--out", str(tmp_path)]) == 2
    assert "not found" in capsys.readouterr().err


@pytest.mark.slow
@pytest.mark.data
def test_real_lfw_pair_with_mtcnn_and_a_synthetic_mask(model, shared_data):
    pytest.importorskip("facenet_pytorch")
    from cqa_core.explain import mask_effect

    lfw = shared_data / "lfw-deepfunneled"
    a, b = lfw / "Aaron_Eckhart" / "Aaron_Eckhart_0001.jpg", lfw / "AJ_Cook" / "AJ_Cook_0001.jpg"
    if not a.is_file() or not b.is_file():
        pytest.skip("LFW photos not found")
    pa = Analyser()(model, str(a), str(b))
    fa = pa.a
    assert fa.align_method == "mtcnn" and fa.branches.attention_photo.shape == (4, 250, 250)
    assert pa.branches.decomposition.sum() == pytest.approx(pa.similarity, abs=1e-5)
    pytest.importorskip("cqa_core.data.degrade")
    eff = mask_effect(model, fa.aligned, kind="surgical", seed=0)
    assert eff.alpha[100, 56] > 0.5 and eff.alpha[40, 56] == 0.0  # a mask covers the mouth, not the eyes
    assert ((eff.mask_share_clean > 0) & (eff.mask_share_clean < 1)).all()


def test_cli_uses_the_default_model_without_checkpoint(tmp_path, monkeypatch):
    """Issue 15 item 6: no --checkpoint (and no $CQA_CHECKPOINT) -> the bundled default model."""
    from cqa_core.checkpoint import DEFAULT_WEIGHTS, load_default

    if not DEFAULT_WEIGHTS.exists():
        pytest.skip(f"no bundled default weights at {DEFAULT_WEIGHTS}")
    monkeypatch.delenv("CQA_CHECKPOINT", raising=False)
    a = tmp_path / "a.png"
    Image.fromarray(face(30)).save(a)
    assert main(["explain", str(a), "--out", str(tmp_path / "out"), "--methods", ""]) == 0
    report = json.loads((tmp_path / "out" / "analysis.json").read_text())
    assert report["model"] == "default model"
    expected = analyse(load_default(), face(30), methods=())
    assert report["a"]["quality"] == pytest.approx(expected.branches.quality.tolist(), abs=1e-6)
