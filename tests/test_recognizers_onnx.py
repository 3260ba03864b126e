"""Any ONNX face embedder as a recognizer (``cqa_core.recognizers.onnx_model``).

Two real exports: an insightface-layout iResNet-18 ArcFace (random weights) and the bundled CQA-Face
(``cqa_core.export.export_onnx``). The onnx2torch module must compute what onnxruntime computes, its
automatically found layer must be the one the torch model explains, and its Grad-CAM must equal the
torch model's. Small graphs built with ``onnx.helper`` check the black-box fallback (an op onnx2torch
has no converter for: LpNormalization) and the one-line errors.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
pytest.importorskip("onnx2torch")

from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from cqa_core.explain.cams import similarity_gradcam  # noqa: E402
from cqa_core.explain.layercam import layer_gradcam  # noqa: E402
from cqa_core.recognizers.arcface import ArcFaceIResNet, export_onnx  # noqa: E402
from cqa_core.recognizers.base import Preprocess, RecognizerError, spatial_layers  # noqa: E402
from cqa_core.recognizers.onnx_model import graph_io, load_onnx, node_layer  # noqa: E402
from cqa_core.recognizers.torch_module import from_module  # noqa: E402

LFW = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "lfw-deepfunneled"


def test_chips() -> np.ndarray:
    """Two noise chips, plus two LFW photos (centre 150 x 150 resized to 112) when the data is there."""
    out = [np.random.default_rng(7).integers(0, 256, (2, 112, 112, 3), dtype=np.uint8)]
    photos = sorted(LFW.glob("*/*_0001.jpg"))[:2] if LFW.is_dir() else []
    if photos:
        from PIL import Image

        crops = [np.asarray(Image.open(p).convert("RGB").crop((50, 50, 200, 200)).resize((112, 112), Image.BILINEAR))
                 for p in photos]
        out.append(np.stack(crops))  # (2, 112, 112, 3)
    return np.concatenate(out)


test_chips.__test__ = False  # a helper, not a test


@pytest.fixture(scope="module")
def chips() -> np.ndarray:
    return test_chips()


@pytest.fixture(scope="module")
def r18(tmp_path_factory: pytest.TempPathFactory) -> tuple[ArcFaceIResNet, Path]:
    """An r18 ArcFace with random insightface-layout weights and its ONNX export (dynamic batch)."""
    try:  # python -m pytest from the repository root, or pytest with tests/ on sys.path
        from tests.test_recognizers_arcface import scaled_state
    except ImportError:  # pragma: no cover
        from test_recognizers_arcface import scaled_state

    model = ArcFaceIResNet((2, 2, 2, 2))
    model.load_state_dict(scaled_state(seed=4))
    model.eval()
    return model, export_onnx(model, tmp_path_factory.mktemp("r18") / "r18.onnx")


@pytest.fixture(scope="module")
def cqa(tmp_path_factory: pytest.TempPathFactory) -> tuple[torch.nn.Module, Path]:
    from cqa_core.checkpoint import load_default
    from cqa_core.export import export_onnx

    model = load_default()
    return model, export_onnx(model, tmp_path_factory.mktemp("cqa") / "cqa.onnx")


def ort_embed(path: Path, x: torch.Tensor, output: str | None = None) -> np.ndarray:
    """onnxruntime's output for a preprocessed batch x (N, 3, S, S)."""
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run([output] if output else None, {session.get_inputs()[0].name: x.numpy()})[0]


def test_iresnet_whitebox_matches_onnxruntime_and_torch(r18, chips: np.ndarray) -> None:
    model, path = r18
    rec = load_onnx(path)
    assert rec.whitebox and rec.kind == "onnx" and rec.note == "" and rec.preprocess == Preprocess()
    x = rec.preprocess.to_tensor(chips)  # (N, 3, 112, 112)
    got = rec.embed(chips)  # (N, 512) through the onnx2torch module
    np.testing.assert_allclose(got, ort_embed(path, x), atol=1e-4, rtol=0)
    with torch.no_grad():
        np.testing.assert_allclose(got, model(x).numpy(), atol=1e-4, rtol=0)
    assert rec.layer == "bn2/BatchNormalization"  # insightface's bn2 after layer4: what "bn2" is in torch
    assert dict(spatial_layers(rec.module, rec.preprocess))[rec.layer] == (1, 512, 7, 7)

    torch_rec = from_module(model, layer="bn2", name="r18")
    a, b = chips[:2], chips[-2:][::-1].copy()
    for got_map, want_map in zip(layer_gradcam(rec, a, b), layer_gradcam(torch_rec, a, b), strict=True):
        assert got_map.shape == (2, 112, 112)
        np.testing.assert_allclose(got_map, want_map, atol=1e-4, rtol=0)
    by_node = load_onnx(path, layer="/layer4/layer4.1/Add")  # the ONNX node name of layer4's last block
    assert by_node.layer == "layer4/layer4/1/Add"
    for got_map, want_map in zip(layer_gradcam(by_node, a, b), layer_gradcam(from_module(model, "layer4"), a, b),
                                 strict=True):
        np.testing.assert_allclose(got_map, want_map, atol=1e-4, rtol=0)
    with pytest.raises(RecognizerError, match="'Add' is not a node of the converted graph; e.g. .*layer4/layer4/1/Add"):
        node_layer(rec.module, "Add")  # what load_onnx(path, layer="Add") raises


def test_cqa_export_whitebox_is_the_stem_and_its_gradcam(cqa, chips: np.ndarray) -> None:
    model, path = cqa
    rec = load_onnx(path)
    assert rec.whitebox and rec.note == ""
    x = rec.preprocess.to_tensor(chips)  # (N, 3, 112, 112)
    got = rec.embed(chips)  # (N, 512): the "embedding" output, not attention_maps / quality
    np.testing.assert_allclose(got, ort_embed(path, x, "embedding"), atol=1e-4, rtol=0)
    with torch.no_grad():
        np.testing.assert_allclose(got, model(x).embedding.numpy(), atol=1e-4, rtol=0)
    assert rec.layer == "model/stem/bn2/BatchNormalization"  # the stem output X, not a LANet map
    c = model.stem.out_channels
    assert dict(spatial_layers(rec.module, rec.preprocess))[rec.layer] == (1, c, 7, 7)

    a, b = chips[:2], chips[-2:][::-1].copy()
    maps_a, maps_b = layer_gradcam(rec, a, b)
    ref = similarity_gradcam(model, a, b)
    np.testing.assert_allclose(maps_a, ref.map_a, atol=1e-4, rtol=0)
    np.testing.assert_allclose(maps_b, ref.map_b, atol=1e-4, rtol=0)
    torch_a, torch_b = layer_gradcam(from_module(model, output="embedding"), a, b)  # auto layer: model.stem
    np.testing.assert_allclose(maps_a, torch_a, atol=1e-4, rtol=0)
    np.testing.assert_allclose(maps_b, torch_b, atol=1e-4, rtol=0)


def test_whitebox_false_runs_onnxruntime(r18, cqa, chips: np.ndarray) -> None:
    model, path = r18
    rec = load_onnx(path, whitebox=False)
    assert rec.module is None and not rec.whitebox and "whitebox=False" in rec.note
    np.testing.assert_array_equal(rec.embed(chips), ort_embed(path, rec.preprocess.to_tensor(chips)))
    quality = load_onnx(cqa[1], whitebox=False, output="quality")
    assert quality.embed(chips[:1]).shape == (1, cqa[0].config.branches)
    assert rec.digest.startswith("onnx-") and quality.digest.startswith("onnx-") and rec.digest != quality.digest
    with pytest.raises(RecognizerError, match="has embedding, attention_maps, quality"):
        load_onnx(cqa[1], output="nope")


def conv_graph(path: Path, lp_norm: bool, batch: int | str = "N", size: int = 112) -> np.ndarray:
    """Conv 16x16 stride 16 (3 -> 8) [-> LpNormalization over channels] -> GlobalAveragePool -> Flatten.

    Returns the conv weight (8, 3, 16, 16).
    """
    w = np.random.default_rng(3).normal(0, 0.05, (8, 3, 16, 16)).astype(np.float32)
    nodes = [helper.make_node("Conv", ["images", "w"], ["x"], strides=[16, 16], name="conv")]
    last = "x"
    if lp_norm:
        nodes.append(helper.make_node("LpNormalization", ["x"], ["xn"], axis=1, p=2, name="l2"))
        last = "xn"
    nodes += [helper.make_node("GlobalAveragePool", [last], ["g"]), helper.make_node("Flatten", ["g"], ["emb"])]
    graph = helper.make_graph(nodes, "tiny", [helper.make_tensor_value_info("images", TensorProto.FLOAT,
                                                                            [batch, 3, size, size])],
                              [helper.make_tensor_value_info("emb", TensorProto.FLOAT, [batch, 8])],
                              [numpy_helper.from_array(w, "w")])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return w


def test_unconvertible_op_falls_back_to_blackbox_naming_it(tmp_path: Path, chips: np.ndarray) -> None:
    w = conv_graph(tmp_path / "lp.onnx", lp_norm=True)
    rec = load_onnx(tmp_path / "lp.onnx", layer="conv")
    assert rec.module is None and not rec.whitebox
    assert "LpNormalization" in rec.note and "'l2'" in rec.note and "layer 'conv' not used" in rec.note
    assert "\n" not in rec.note
    x = rec.preprocess.to_tensor(chips)  # (N, 3, 112, 112)
    want = F.normalize(F.conv2d(x, torch.from_numpy(w), stride=16), dim=1).mean(dim=(2, 3))  # (N, 8) by hand
    np.testing.assert_allclose(rec.embed(chips), want.numpy(), atol=1e-5, rtol=0)
    bgr = load_onnx(tmp_path / "lp.onnx", whitebox=False, bgr=True, mean=0.0, std=255.0)
    x_bgr = torch.from_numpy(chips[..., ::-1].copy()).permute(0, 3, 1, 2).float() / 255.0  # (N, 3, 112, 112) BGR
    want = F.normalize(F.conv2d(x_bgr, torch.from_numpy(w), stride=16), dim=1).mean(dim=(2, 3))  # (N, 8)
    np.testing.assert_allclose(bgr.embed(chips), want.numpy(), atol=1e-5, rtol=0)

    w1 = conv_graph(tmp_path / "b1.onnx", lp_norm=False, batch=1)  # a graph fixed at batch 1
    blackbox = load_onnx(tmp_path / "b1.onnx", whitebox=False)
    want = F.conv2d(x, torch.from_numpy(w1), stride=16).mean(dim=(2, 3))  # (N, 8)
    np.testing.assert_allclose(blackbox.embed(chips), want.numpy(), atol=1e-5, rtol=0)
    whitebox = load_onnx(tmp_path / "b1.onnx")
    assert whitebox.layer == "conv"  # the only spatial layer (8 x 7 x 7)
    np.testing.assert_allclose(whitebox.embed(chips), want.numpy(), atol=1e-5, rtol=0)


def tiny_model(dims: list, elem: int = TensorProto.FLOAT, outputs: tuple[str, ...] = ("y",)):
    """A ModelProto whose input ``x`` has ``dims``; Identity nodes produce ``outputs``."""
    nodes = [helper.make_node("Identity", ["x"], [o]) for o in outputs]
    graph = helper.make_graph(nodes, "t", [helper.make_tensor_value_info("x", elem, dims)],
                              [helper.make_tensor_value_info(o, elem, dims) for o in outputs])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_input_and_output_checks(tmp_path: Path) -> None:
    assert graph_io(tiny_model(["N", 3, 96, 96])).size == 96
    assert graph_io(tiny_model(["N", 3, 112, 112], outputs=("maps", "embedding"))).output == "embedding"
    assert graph_io(tiny_model(["N", 3, 112, 112], outputs=("a", "b"))).output == "a"
    assert graph_io(tiny_model(["N", 3, 112, 112], outputs=("a", "b")), output=1).output == "b"
    assert graph_io(tiny_model([1, 3, "S", "S"]), size=128).size == 128
    two = tiny_model(["N", 3, 112, 112])
    two.graph.input.append(helper.make_tensor_value_info("mask", TensorProto.FLOAT, ["N", 1]))
    shapeless = tiny_model(["N", 3, 112, 112])
    shapeless.graph.input[0].type.tensor_type.ClearField("shape")
    assert graph_io(shapeless, size=112).size == 112
    cases = {
        "2 inputs \\('x', 'mask'\\)": two,
        "dynamic side \\[\\?, \\?, \\?, \\?\\]": shapeless,
        "dynamic side": tiny_model(["N", 3, "S", "S"]),
        "has shape \\[\\?, 3, 112\\]": tiny_model(["N", 3, 112]),
        "1 channels, not 3": tiny_model(["N", 1, 112, 112]),
        "channels-last": tiny_model(["N", 112, 112, 3]),
        "not square \\(112 x 96\\)": tiny_model(["N", 3, 112, 96]),
        "is UINT8": tiny_model(["N", 3, 112, 112], elem=TensorProto.UINT8),
    }
    for message, model in cases.items():
        onnx.save(model, str(tmp_path / "m.onnx"))
        with pytest.raises(RecognizerError, match=message) as info:
            load_onnx(tmp_path / "m.onnx")
        assert "\n" not in str(info.value)
    with pytest.raises(RecognizerError, match="no such file"):
        load_onnx(tmp_path / "absent.onnx")
    (tmp_path / "text.onnx").write_text("definitely not a protobuf")
    with pytest.raises(RecognizerError, match="not an ONNX file"):
        load_onnx(tmp_path / "text.onnx")
    (tmp_path / "empty.onnx").write_bytes(b"")
    with pytest.raises(RecognizerError, match="not an ONNX model"):
        load_onnx(tmp_path / "empty.onnx")


def test_a_freshly_initialised_export_converts_white_box(tmp_path: Path, chips: np.ndarray) -> None:
    """A fresh iResNet-18's folded Conv biases are all zero, so PyTorch's exporter aliases them through
    Identity nodes (onnx2torch needs them as initializers): they are inlined before conversion."""
    path = export_onnx(ArcFaceIResNet((2, 2, 2, 2)), tmp_path / "fresh.onnx")
    assert any(n.op_type == "Identity" for n in onnx.load(str(path)).graph.node)  # the case under test
    rec = load_onnx(path)
    assert rec.whitebox and rec.note == ""
    x = rec.preprocess.to_tensor(chips)  # (N, 3, 112, 112)
    np.testing.assert_allclose(rec.embed(chips), ort_embed(path, x), atol=1e-4, rtol=0)
