"""insightface arcface_torch ``backbone.pth`` as a plain ArcFace recognizer (``cqa_core.recognizers.arcface``).

The state dicts and the reference forward (up to bn2) come from ``tests/test_import_backbone.py``, written
from insightface's published ``iresnet.py`` layout independently of ``cqa_core``; the head after bn2
(flatten -> fc -> features BN1d, eval) is written out here with ``torch.nn.functional``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from cqa_core.recognizers.arcface import ArcFaceIResNet, infer_depth, load_arcface
from cqa_core.recognizers.base import Preprocess, RecognizerError, find_layer

try:  # run from the repository root (python -m pytest) or with tests/ on sys.path (pytest's rootdir mode)
    from tests.test_import_backbone import insightface_shapes, random_state, reference_forward
except ImportError:  # pragma: no cover
    from test_import_backbone import insightface_shapes, random_state, reference_forward

R18 = (2, 2, 2, 2)


def scaled_state(seed: int = 0) -> dict[str, torch.Tensor]:
    """random_state(r18) with a unit-scaled fc (its default 1 + 0.1 N(0, 1) makes embeddings ~1e4)."""
    sd = random_state(R18, seed)
    g = torch.Generator().manual_seed(seed + 100)
    sd["fc.weight"] = torch.randn(512, 512 * 49, generator=g) / (512 * 49) ** 0.5  # (512, 25088)
    return sd


def reference_embedding(sd: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """insightface IResNet.forward in eval mode: reference up to bn2, then flatten -> fc -> features."""
    feat = reference_forward(sd, x, R18).flatten(1)  # (B, 25088)
    emb = F.linear(feat, sd["fc.weight"], sd["fc.bias"])  # (B, 512)
    return F.batch_norm(emb, sd["features.running_mean"], sd["features.running_var"], sd["features.weight"],
                        sd["features.bias"], False, 0.0, 1e-5)  # (B, 512)


@pytest.fixture(scope="module")
def state() -> dict[str, torch.Tensor]:
    return scaled_state()


def chips(n: int = 2, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, 112, 112, 3), dtype=np.uint8)  # (n, 112, 112, 3)


def test_module_names_and_forward_are_insightface(state: dict[str, torch.Tensor]) -> None:
    model = ArcFaceIResNet(R18)
    assert set(model.state_dict()) == set(insightface_shapes(R18))  # exactly arcface_torch's keys
    model.load_state_dict(state, strict=True)
    model.eval()
    x = torch.randn(2, 3, 112, 112, generator=torch.Generator().manual_seed(2))  # (2, 3, 112, 112)
    with torch.no_grad():
        got = model(x)  # (2, 512)
        want = reference_embedding(state, x)  # (2, 512)
    assert got.shape == (2, 512)
    assert float((got - want).abs().max()) < 1e-5


def test_depth_is_inferred_from_block_counts() -> None:
    for name, depths in {"r18": R18, "r34": (3, 4, 6, 3), "r50": (3, 4, 14, 3), "r100": (3, 13, 30, 3)}.items():
        keys = dict.fromkeys(insightface_shapes(depths))  # names only, nothing allocated
        assert infer_depth(keys) == name
        assert infer_depth({f"module.{k}": v for k, v in keys.items()}) == name
    with pytest.raises(RecognizerError, match=r"hold \(2, 2, 2, 3\) blocks"):
        infer_depth(dict.fromkeys(insightface_shapes((2, 2, 2, 3))))
    with pytest.raises(RecognizerError, match="not an arcface_torch iResNet"):
        infer_depth({"conv.weight": None, "linear.bias": None})


def test_backbone_pth_loads_as_a_whitebox_recognizer(tmp_path: Path, state: dict[str, torch.Tensor]) -> None:
    torch.save(state, tmp_path / "backbone.pth")
    rec = load_arcface(tmp_path / "backbone.pth")
    assert (rec.name, rec.kind, rec.layer, rec.source) == ("backbone.pth", "arcface", "layer4",
                                                           str(tmp_path / "backbone.pth"))
    assert rec.whitebox and rec.preprocess == Preprocess() and rec.readout is None
    assert [len(getattr(rec.module, f"layer{i}")) for i in range(1, 5)] == list(R18)
    c = chips(3)
    x = Preprocess().to_tensor(c)  # (3, 3, 112, 112): (pixel - 127.5) / 127.5, RGB
    with torch.no_grad():
        want = reference_embedding(state, x).numpy()  # (3, 512)
        out = rec.module.layer4(rec.module.layer3(rec.module.layer2(rec.module.layer1(
            rec.module.prelu(rec.module.bn1(rec.module.conv1(x)))))))  # (3, 512, 7, 7)
    assert out.shape == (3, 512, 7, 7)
    np.testing.assert_allclose(rec.embed(c), want, atol=1e-5, rtol=0)
    assert load_arcface(tmp_path / "backbone.pth", name="mine", layer="bn2").layer == "bn2"
    with pytest.raises(RecognizerError, match="layer 'layer9'"):
        load_arcface(tmp_path / "backbone.pth", layer="layer9")


def test_pickled_model_is_refused_in_one_line(tmp_path: Path, state: dict[str, torch.Tensor]) -> None:
    model = ArcFaceIResNet(R18)
    model.load_state_dict(state)
    torch.save(model, tmp_path / "model.pth")  # the whole module, pickled: code would run on load
    with pytest.raises(RecognizerError) as info:
        load_arcface(tmp_path / "model.pth")
    msg = str(info.value)
    assert "is a pickled model, not a state dict" in msg and "save model.state_dict()" in msg
    assert "\n" not in msg


def test_ddp_prefix_and_errors(tmp_path: Path, state: dict[str, torch.Tensor]) -> None:
    torch.save({f"module.{k}": v for k, v in state.items()}, tmp_path / "ddp.pth")
    rec = load_arcface(tmp_path / "ddp.pth")
    torch.testing.assert_close(rec.module.layer4[1].bn3.bias, state["layer4.1.bn3.bias"])
    c = chips(2, seed=5)
    with torch.no_grad():
        want = reference_embedding(state, Preprocess().to_tensor(c)).numpy()  # (2, 512)
    np.testing.assert_allclose(rec.embed(c), want, atol=1e-5, rtol=0)
    assert find_layer(rec.module, "layer4") is rec.module.layer4

    with pytest.raises(RecognizerError, match="no such file"):
        load_arcface(tmp_path / "absent.pth")
    for junk in (b"not a torch file", b"nonsense"):  # the second is an invalid pickle, not a pickled model
        (tmp_path / "junk.pth").write_bytes(junk)
        with pytest.raises(RecognizerError, match="not a tensor state dict .*weights_only") as info:
            load_arcface(tmp_path / "junk.pth")
        assert "\n" not in str(info.value) and "pickled model" not in str(info.value)
    body = {k: v for k, v in state.items() if not k.startswith(("fc.", "features."))}
    torch.save(body, tmp_path / "body.pth")
    with pytest.raises(RecognizerError, match="without the fc / features embedding head"):
        load_arcface(tmp_path / "body.pth")
    bad = dict(state, **{"layer2.0.conv1.weight": torch.zeros(128, 32, 3, 3)})
    torch.save(bad, tmp_path / "bad.pth")
    with pytest.raises(RecognizerError, match="does not load into an insightface r18: .*layer2.0.conv1.weight"):
        load_arcface(tmp_path / "bad.pth")
