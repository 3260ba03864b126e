"""Grad-CAM of a pair similarity at a named layer (``cqa_core.explain.layercam``).

A tiny module with hand-set weights is checked against Grad-CAM written out in numpy (analytic
gradient of the cosine, pytorch-grad-cam's min-max, bilinear upsampling with half-pixel centres);
the bundled CQA-Face, wrapped as a plain torch recognizer, against ``cams.similarity_gradcam``.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from cqa_core.explain.cams import similarity_gradcam
from cqa_core.explain.common import ExplainError
from cqa_core.explain.layercam import layer_gradcam
from cqa_core.recognizers.base import Preprocess, Recognizer, RecognizerError
from cqa_core.recognizers.torch_module import from_module

PRE = Preprocess(size=8)
W_CONV = np.array([[1.0, 0.0, 0.0], [0.5, 1.0, -0.5]])  # (C=2, 3): X_0 = R, X_1 = 0.5 R + G - 0.5 B
W_FC = np.array([[1.0, 2.0], [-1.0, 0.5], [0.0, 1.0]])  # (D=3, C=2)


class Tiny(nn.Module):
    """x (N, 3, 8, 8) -> conv 1x1 stride 2 (X: N, 2, 4, 4) -> global mean -> linear (N, 3)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 2, 1, stride=2, bias=False)
        self.fc = nn.Linear(2, 3, bias=False)
        with torch.no_grad():
            self.conv.weight.copy_(torch.tensor(W_CONV, dtype=torch.float32)[:, :, None, None])
            self.fc.weight.copy_(torch.tensor(W_FC, dtype=torch.float32))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.conv(x).mean(dim=(2, 3)))  # (N, 3)


def bilinear(m: np.ndarray, size: int) -> np.ndarray:
    """Bilinear upsampling of an (h, w) map to (size, size), half-pixel centres, edges clamped."""
    def axis(n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        src = np.maximum((np.arange(size) + 0.5) * n / size - 0.5, 0.0)
        i0 = np.floor(src).astype(int)
        return i0, np.minimum(i0 + 1, n - 1), src - i0

    r0, r1, fy = axis(m.shape[0])
    c0, c1, fx = axis(m.shape[1])
    top = m[r0][:, c0] * (1 - fx) + m[r0][:, c1] * fx  # (size, size)
    bottom = m[r1][:, c0] * (1 - fx) + m[r1][:, c1] * fx  # (size, size)
    return top * (1 - fy)[:, None] + bottom * fy[:, None]


def minmax(m: np.ndarray) -> np.ndarray:
    m = m - m.min()
    return m / (m.max() + 1e-7)


def manual_gradcam(x_a: np.ndarray, x_b: np.ndarray, normalise: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Grad-CAM of cos(e_a, e_b) at Tiny.conv for one pair of preprocessed inputs (3, 8, 8), by hand."""
    feats = [np.einsum("ck,khw->chw", W_CONV, x[:, ::2, ::2]) for x in (x_a, x_b)]  # X: (2, 4, 4) each
    ea, eb = (W_FC @ f.mean(axis=(1, 2)) for f in feats)  # (3,) each
    na, nb = np.linalg.norm(ea), np.linalg.norm(eb)
    cos = ea @ eb / (na * nb)
    grads = [eb / (na * nb) - cos * ea / na**2, ea / (na * nb) - cos * eb / nb**2]  # d cos / d e_a, d e_b
    maps = []
    for f, g in zip(feats, grads, strict=True):
        w = W_FC.T @ g / 16  # (2,): every X_c(h, w) enters e through the mean over 16 positions
        cam = np.maximum(np.einsum("c,chw->hw", w, f), 0)  # (4, 4)
        maps.append(minmax(bilinear(minmax(cam), 8)) if normalise else bilinear(cam, 8))  # (8, 8)
    return maps[0], maps[1]


def test_tiny_module_matches_the_hand_computation() -> None:
    rec = Recognizer(name="tiny", kind="torch", preprocess=PRE, module=Tiny(), layer="conv")
    chips = np.random.default_rng(0).integers(0, 256, (3, 8, 8, 3), dtype=np.uint8)  # (3, 8, 8, 3)
    a, b = chips[:2], chips[[2, 0]]  # two different pairs (a face with itself has a zero gradient)
    maps_a, maps_b = layer_gradcam(rec, a, b)
    assert maps_a.shape == maps_b.shape == (2, 8, 8) and maps_a.dtype == np.float32
    x_a, x_b = PRE.to_tensor(a).double().numpy(), PRE.to_tensor(b).double().numpy()  # (2, 3, 8, 8)
    for i in range(2):
        want_a, want_b = manual_gradcam(x_a[i], x_b[i])
        np.testing.assert_allclose(maps_a[i], want_a, atol=1e-5)
        np.testing.assert_allclose(maps_b[i], want_b, atol=1e-5)
        assert maps_a[i].max() > 0.99  # not a degenerate map
    one_b = layer_gradcam(rec, a, b[:1])[0]  # a single face b is compared with every face a
    np.testing.assert_allclose(one_b[0], maps_a[0], atol=1e-6)
    raw_a, raw_b = layer_gradcam(rec, PRE.to_tensor(a), PRE.to_tensor(b), normalise=False)  # float input
    for i in range(2):
        want_a, want_b = manual_gradcam(x_a[i], x_b[i], normalise=False)
        np.testing.assert_allclose(raw_a[i], want_a, atol=1e-7, rtol=1e-5)
        np.testing.assert_allclose(raw_b[i], want_b, atol=1e-7, rtol=1e-5)
    assert not np.allclose(raw_a, maps_a)


def test_cqa_face_as_torch_recognizer_equals_similarity_gradcam() -> None:
    from cqa_core.checkpoint import load_default

    model = load_default()
    rec = from_module(model, layer="stem", output="embedding", name="default")  # the wrapper's "model.stem"
    assert rec.layer == "model.stem" and rec.kind == "torch" and rec.whitebox
    assert from_module(model, output="embedding").layer == "model.stem"  # found: the widest 7 x 7 map
    flags = {n: p.requires_grad for n, p in model.named_parameters()}
    rec.module.train()  # layer_gradcam explains the deployed model and puts the mode back
    chips = np.random.default_rng(1).integers(0, 256, (3, 112, 112, 3), dtype=np.uint8)
    a, b = chips[:2], chips[[2, 0]]  # two different pairs (a face with itself has a zero gradient)
    maps_a, maps_b = layer_gradcam(rec, a, b)
    ref = similarity_gradcam(model.eval(), a, b)
    np.testing.assert_allclose(maps_a, ref.map_a, atol=1e-5, rtol=0)
    np.testing.assert_allclose(maps_b, ref.map_b, atol=1e-5, rtol=0)
    raw_a, _ = layer_gradcam(rec, a, b, normalise=False)
    ref_raw = similarity_gradcam(model, a, b, normalise=False)
    np.testing.assert_allclose(raw_a, ref_raw.map_a, atol=1e-5, rtol=1e-4)

    assert all(not m._forward_hooks for m in rec.module.modules())
    assert all(p.grad is None for p in rec.module.parameters())
    assert {n: p.requires_grad for n, p in model.named_parameters()} == flags


def test_errors() -> None:
    with pytest.raises(RecognizerError, match="pass output= one of 'embedding', 'feature_map'"):
        from cqa_core.checkpoint import load_default

        from_module(load_default())
    with pytest.raises(RecognizerError, match="returns one tensor; leave output out"):
        from_module(Tiny(), preprocess=PRE, output=0)
    with pytest.raises(RecognizerError, match=r"at least 7 x 7; name one \(layer="):
        from_module(Tiny(), preprocess=PRE)  # X is 4 x 4
    assert from_module(Tiny(), "conv", preprocess=PRE).layer == "conv"
    blackbox = Recognizer(name="bb", kind="onnx", preprocess=PRE, embed_fn=lambda c: np.zeros((len(c), 3)))
    chips = np.zeros((1, 8, 8, 3), np.uint8)
    with pytest.raises(ExplainError, match="black-box"):
        layer_gradcam(blackbox, chips, chips)
    rec = Recognizer(name="tiny", kind="torch", preprocess=PRE, module=Tiny(), layer="conv")
    with pytest.raises(ExplainError, match="takes 8 x 8"):
        layer_gradcam(rec, np.zeros((1, 16, 16, 3), np.uint8), chips)
    with pytest.raises(ExplainError, match="must be 1 or match"):
        layer_gradcam(rec, np.zeros((3, 8, 8, 3), np.uint8), np.zeros((2, 8, 8, 3), np.uint8))

    class Twice(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, 3, 1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.conv(self.conv(x)).mean(dim=(2, 3))  # (N, 3)

    unused = Tiny()
    unused.spare = nn.Conv2d(3, 3, 1)  # registered, never called
    with pytest.raises(ExplainError, match="did not run"):
        layer_gradcam(Recognizer(name="u", kind="torch", preprocess=PRE, module=unused, layer="spare"), chips, chips)
    shared = Recognizer(name="twice", kind="torch", preprocess=PRE, module=Twice(), layer="conv")
    with pytest.raises(ExplainError, match="ran 2 times"):
        layer_gradcam(shared, chips, chips)
    assert not shared.module.conv._forward_hooks  # removed although the forward failed
