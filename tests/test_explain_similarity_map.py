"""The exact spatial decomposition of a pair's cosine (similarity-map): hand-set weights whose terms
are worked out on paper, then real heads (iResNet-18, CQA-Face) whose terms must sum to the model's
own cosine within 1e-5."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from cqa_core.explain.common import ExplainError
from cqa_core.explain.decomposition import decompose
from cqa_core.explain.similarity_map import fold_head, similarity_map, similarity_map_chips
from cqa_core.model.backbones import IRESNET_DEPTHS, IResNet
from cqa_core.recognizers.arcface import ArcFaceIResNet
from cqa_core.recognizers.base import Preprocess, Recognizer
from cqa_core.recognizers.cqa import from_cqa


class Tiny(nn.Module):
    """Input (N, 1, 2, 2) is the feature map itself ('feat'); flatten; Linear(4 -> 2) set by hand."""

    def __init__(self, pooled: bool = False) -> None:
        super().__init__()
        self.feat = nn.Identity()
        self.pool = nn.AdaptiveAvgPool2d(1) if pooled else nn.Identity()
        self.fc = nn.Linear(1 if pooled else 4, 2)
        with torch.no_grad():
            if pooled:
                self.fc.weight.copy_(torch.tensor([[1.0], [2.0]]))
                self.fc.bias.zero_()
            else:  # e = (F[0, 0], F[0, 1]) + (0, 1): locations (1, 0) and (1, 1) are not read
                self.fc.weight.copy_(torch.tensor([[1.0, 0, 0, 0], [0, 1.0, 0, 0]]))
                self.fc.bias.copy_(torch.tensor([0.0, 1.0]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.pool(self.feat(x)).flatten(1))  # (N, 2)


FA = torch.tensor([[[[3.0, 0.0], [0.0, 5.0]]]])  # (1, 1, 2, 2)
FB = torch.tensor([[[[4.0, 3.0], [7.0, 0.0]]]])  # (1, 1, 2, 2)


def test_flatten_linear_terms_worked_by_hand():
    # e_a = (3, 0) + (0, 1) = (3, 1); e_b = (4, 3) + (0, 1) = (4, 4); |e_a||e_b| = sqrt(10) 4 sqrt(2) = 8 sqrt(5)
    r = similarity_map(Tiny(), "feat", FA, FB)
    n = 8 * math.sqrt(5)
    assert r.cosine == pytest.approx(16 / n, abs=1e-7)  # 2 / sqrt(5)
    # face a: location (0, 0) gives u = (3, 0), <u, e_b> = 12; (1, 1) holds 5 but fc never reads it
    np.testing.assert_allclose(r.terms[0], [[12 / n, 0.0], [0.0, 0.0]], atol=1e-12)
    # face b: (0, 0) u = (4, 0) . (3, 1) = 12; (0, 1) u = (0, 3) . (3, 1) = 3; (1, 0) holds 7, unread
    np.testing.assert_allclose(r.terms[1], [[12 / n, 3 / n], [0.0, 0.0]], atol=1e-12)
    np.testing.assert_allclose(r.remainder, [4 / n, 1 / n], atol=1e-12)  # <(0, 1), e_b> = 4, <(0, 1), e_a> = 1
    for k in range(2):
        assert r.terms[k].sum() + r.remainder[k] == pytest.approx(r.cosine, abs=1e-12)
    assert r.maps.shape == (2, 2, 2) and r.head == "pool -> fc"  # the Identity 'pool' runs after 'feat' too


def test_pooled_head_gives_each_location_a_quarter_stylianou():
    # e = GAP(F) * (1, 2): e_a = 2 (1, 2), e_b = 3.5 (1, 2): cosine 1; location l of a: (F_l / 4) (1, 2) . e_b / N
    r = similarity_map(Tiny(pooled=True), "feat", FA, FB)
    n = 2 * 3.5 * 5  # |e_a||e_b| = (2 sqrt 5)(3.5 sqrt 5)
    assert r.cosine == pytest.approx(1.0, abs=1e-7)
    np.testing.assert_allclose(r.terms[0], FA[0, 0].numpy() / 4 * 5 * 3.5 / n, atol=1e-12)
    np.testing.assert_allclose(r.terms[1], FB[0, 0].numpy() / 4 * 5 * 2 / n, atol=1e-12)
    np.testing.assert_allclose(r.remainder, 0.0, atol=1e-12)
    assert r.head == "pool -> fc"


def test_negative_term_where_a_location_points_away_from_the_other_face():
    fb = torch.tensor([[[[4.0, -3.0], [0.0, 0.0]]]])  # e_b = (4, -2): location (0, 1) opposes e_a = (3, 1)
    r = similarity_map(Tiny(), "feat", FA, fb)
    assert r.terms[1, 0, 1] < 0 < r.terms[1, 0, 0]


def _randomise_bn(model: nn.Module, seed: int = 0) -> nn.Module:
    """Non-trivial running statistics and affine parameters in every batch-norm (as after training)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
                n = m.num_features
                m.running_mean.copy_(torch.randn(n, generator=g) * 0.3)
                m.running_var.copy_(torch.rand(n, generator=g) + 0.5)
                m.weight.copy_(torch.rand(n, generator=g) + 0.5)
                m.bias.copy_(torch.randn(n, generator=g) * 0.2)
    return model.eval()


def _pair(seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(2, 3, 112, 112, generator=g) * 2 - 1  # (2, 3, 112, 112)
    return x[:1], x[1:]


def _model_cosine(module: nn.Module, xa: torch.Tensor, xb: torch.Tensor) -> float:
    with torch.no_grad():
        e = module(torch.cat([xa, xb]))  # (2, D)
        e = e if isinstance(e, torch.Tensor) else e.embedding
    return float(torch.nn.functional.cosine_similarity(e[:1], e[1:]))


def test_arcface_iresnet18_bn2_dropout_flatten_fc_features_sums_to_its_cosine():
    torch.manual_seed(0)
    model = _randomise_bn(ArcFaceIResNet(IRESNET_DEPTHS["r18"], dropout=0.4))
    xa, xb = _pair()
    r = similarity_map(model, "layer4", xa, xb)
    assert r.head == "bn2 -> dropout -> fc -> features"
    assert r.terms.shape == (2, 7, 7) and r.maps.shape == (2, 112, 112)
    assert r.cosine == pytest.approx(_model_cosine(model, xa, xb), abs=1e-6)
    for k in range(2):
        assert r.terms[k].sum() + r.remainder[k] == pytest.approx(r.cosine, abs=1e-5)
    assert not model.training  # the model's mode is left as it was (eval)


def test_backbones_iresnet18_stem_flatten_fc_features():
    torch.manual_seed(0)
    model = _randomise_bn(IResNet("r18"))
    model.train()  # the map is of the deployed (eval) model; the caller's mode comes back
    xa, xb = _pair(2)
    r = similarity_map(model, "stem", xa, xb)
    assert model.training
    model.eval()
    assert r.head == "fc -> features"
    for k in range(2):
        assert r.terms[k].sum() + r.remainder[k] == pytest.approx(_model_cosine(model, xa, xb), abs=1e-5)


def test_cqa_face_terms_sum_to_its_cosine_and_branches_to_the_branch_decomposition(calibrated_model):
    xa, xb = _pair(3)
    r = similarity_map(calibrated_model, "stem", xa, xb)
    cos = _model_cosine(calibrated_model, xa, xb)
    assert r.terms.shape == (2, 7, 7) and r.branches.shape == (2, 4, 7, 7)
    for k in range(2):
        assert r.terms[k].sum() + r.remainder[k] == pytest.approx(cos, abs=1e-5)
    np.testing.assert_allclose(r.branches.sum(1), r.terms, atol=1e-12)
    d = decompose(calibrated_model, xa, xb)  # (1, b+1, b+1): rows are face a's branches (last: bias)
    np.testing.assert_allclose(r.branches[0].sum((1, 2)), d.matrix[0, :4].sum(1), atol=1e-5)
    np.testing.assert_allclose(r.branches[1].sum((1, 2)), d.matrix[0, :, :4].sum(0), atol=1e-5)
    assert r.remainder[0] == pytest.approx(d.matrix[0, 4].sum(), abs=1e-5)


def test_chips_of_recognizers_give_2_s_s_maps(calibrated_model):
    chips = np.random.default_rng(0).integers(0, 256, (2, 112, 112, 3), dtype=np.uint8)
    r = similarity_map_chips(from_cqa(calibrated_model), chips)  # layer model.stem through the wrapper
    assert r.maps.shape == (2, 112, 112) and r.maps.dtype == np.float32
    assert r.terms[0].sum() + r.remainder[0] == pytest.approx(r.cosine, abs=1e-5)


def test_cqa_face_other_layer_is_refused(calibrated_model):
    with pytest.raises(ExplainError, match="name layer 'stem'"):
        similarity_map(calibrated_model, "stem.stages", *_pair())


class ReluHead(nn.Module):
    def __init__(self, functional: bool) -> None:
        super().__init__()
        self.feat, self.relu, self.fc = nn.Conv2d(3, 4, 16, 16), nn.ReLU(), nn.Linear(4 * 7 * 7, 8)
        self.functional = functional

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.feat(x)  # (N, 4, 7, 7)
        f = torch.relu(f) if self.functional else self.relu(f)
        return self.fc(f.flatten(1))  # (N, 8)


def test_a_relu_module_in_the_head_is_named():
    with pytest.raises(ExplainError, match=r"^the head is not linear: found ReLU"):
        similarity_map(ReluHead(functional=False), "feat", *_pair())


def test_a_functional_nonlinearity_is_caught_by_the_check():
    torch.manual_seed(0)
    with pytest.raises(ExplainError, match="is not linear as found"):
        similarity_map(ReluHead(functional=True), "feat", *_pair())


def test_declared_head_of_a_module_the_hooks_cannot_see():
    torch.manual_seed(0)
    bn, fc = _randomise_bn(nn.BatchNorm2d(4)), nn.Linear(4 * 7 * 7, 8)

    class Functional(nn.Module):  # the head's modules live outside the model (as after a graph conversion)
        def __init__(self) -> None:
            super().__init__()
            self.feat = nn.Conv2d(3, 4, 16, 16)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return fc(bn(self.feat(x)).flatten(1))  # (N, 8)

    model = Functional().eval()
    with pytest.raises(ExplainError, match="no module runs after"):
        similarity_map(model, "feat", *_pair())
    head = fold_head([bn, fc], (4, 7, 7), ["bn", "fc"])
    xa, xb = _pair()
    r = similarity_map(model, "feat", xa, xb, head=head)
    assert r.terms[0].sum() + r.remainder[0] == pytest.approx(_model_cosine(model, xa, xb), abs=1e-5)


def test_black_box_recognizer_is_refused():
    rec = Recognizer(name="bb", kind="torch", preprocess=Preprocess(), embed_fn=lambda c: np.ones((len(c), 4)))
    with pytest.raises(ExplainError, match="black-box"):
        similarity_map_chips(rec, np.zeros((2, 112, 112, 3), np.uint8))


def test_onnx_export_converted_back_is_decomposed_at_its_found_layer(tmp_path):
    pytest.importorskip("onnx2torch", reason="the export extra converts ONNX graphs to torch modules")
    from cqa_core.recognizers.arcface import export_onnx
    from cqa_core.recognizers.onnx_model import load_onnx

    torch.manual_seed(0)
    model = _randomise_bn(ArcFaceIResNet(IRESNET_DEPTHS["r18"]))
    rec = load_onnx(export_onnx(model, tmp_path / "r18.onnx"))  # layer: bn2/BatchNormalization (found)
    chips = np.random.default_rng(0).integers(0, 256, (2, 112, 112, 3), dtype=np.uint8)
    r = similarity_map_chips(rec, chips)
    assert r.head == "Flatten -> fc/Gemm -> features/BatchNormalization"
    e = model(torch.from_numpy(chips).permute(0, 3, 1, 2).float().sub(127.5).div(127.5)).detach()  # (2, 512)
    cos = float(torch.nn.functional.cosine_similarity(e[:1], e[1:]))
    for k in range(2):
        assert r.terms[k].sum() + r.remainder[k] == pytest.approx(cos, abs=1e-5)


def test_head_problem_says_why_in_one_line(calibrated_model):
    from cqa_core.explain.similarity_map import head_problem

    assert head_problem(from_cqa(calibrated_model)) == ""
    relu = Recognizer(name="relu", kind="torch", preprocess=Preprocess(), module=ReluHead(functional=False), layer="feat")
    why = head_problem(relu)
    assert why.startswith("the head is not linear: found ReLU") and "\n" not in why
