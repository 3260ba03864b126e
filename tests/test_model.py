"""Model structure: stems, output contract, QAN, gradients."""

import math

import pytest
import torch

from cqa_core.config import LossConfig, ModelConfig
from cqa_core.losses import CQACriterion
from cqa_core.model import CQAOutput, IResNet, create_head, create_model, create_stem
from cqa_core.model.qan import QAN, relation_vectors

torch.manual_seed(0)


def n_params(m):
    return sum(p.numel() for p in m.parameters())


def test_iresnet100_counts_65_2m_parameters():
    # insightface's r100 with its FC-512 embedding layer: 65.2M parameters
    assert n_params(IResNet("r100")) == pytest.approx(65.2e6, rel=0.01)


@pytest.mark.parametrize("stem,channels", [("r18", 512), ("r34", 512), ("r50", 512), ("r100", 512), ("light", 192), ("light_wide", 256)])
def test_every_stem_forwards_batch_2_to_7x7(stem, channels):
    model = create_stem(stem).eval()
    with torch.no_grad():
        x = model(torch.randn(2, 3, 112, 112))
    assert x.shape == (2, channels, 7, 7)
    assert model.out_channels == channels


def test_stage_depths_follow_insightface():
    depths = [len(s) for s in create_stem("r100").stages]
    assert depths == [3, 13, 30, 3]
    assert [len(s) for s in create_stem("r50").stages] == [3, 4, 14, 3]


def test_light_stem_is_small():
    assert n_params(create_stem("light")) < 3e6
    assert n_params(create_model(ModelConfig(stem="light"))) < 3e6


@pytest.mark.parametrize("b", [2, 4, 8, 16])
def test_output_shapes_for_each_branch_count(b):
    model = create_model(ModelConfig(stem="light", branches=b)).eval()
    with torch.no_grad():
        out = model(torch.randn(2, 3, 112, 112))
    assert isinstance(out, CQAOutput)
    assert out.embedding.shape == (2, 512)
    assert out.feature_map.shape == (2, 192, 7, 7)
    assert out.attention_maps.shape == (2, b, 7, 7)
    assert out.local_features.shape == (2, b, 192)
    assert out.quality.shape == (2, b)
    assert out.relation.shape == (2, b, b)
    assert out.attention_maps.min() >= 0 and out.attention_maps.max() <= 1
    assert ((out.quality > 0) & (out.quality < 1)).all()


def test_local_features_are_gap_of_x_times_m():
    model = create_model(ModelConfig(stem="light", branches=2)).eval()
    with torch.no_grad():
        out = model(torch.randn(1, 3, 112, 112))
    x, m = out.feature_map, out.attention_maps
    for i in range(2):
        p = (x * m[:, i : i + 1]).mean(dim=(2, 3))  # Eq. 1 then GAP
        assert torch.allclose(out.local_features[:, i], p, atol=1e-5)


def test_qan_off_gives_ones_and_zeros():
    model = create_model(ModelConfig(stem="light", branches=4, qan=False)).eval()
    with torch.no_grad():
        out = model(torch.randn(2, 3, 112, 112))
    assert torch.equal(out.quality, torch.ones(2, 4))
    assert torch.equal(out.relation, torch.zeros(2, 4, 4))
    assert model.qan is None


def test_relation_vector_ordering():
    # A = [[1, 2], [3, 4]]: A_0 = [A(0,:), A(:,0)] = [1, 2, 1, 3]; A_1 = [3, 4, 2, 4]
    adj = torch.tensor([[[1.0, 2.0], [3.0, 4.0]]])
    rel = relation_vectors(adj)  # (1, 4, 2), column i is node i's vector
    assert rel[0, :, 0].tolist() == [1, 2, 1, 3]
    assert rel[0, :, 1].tolist() == [3, 4, 2, 4]


def test_qan_adjacency_is_phi_transpose_varphi():
    qan = QAN(channels=8, branches=3, reduction=2, hidden=4).eval()
    p = torch.randn(2, 3, 8)
    out = qan(p)
    phi = qan.phi(p.transpose(1, 2))  # (B, d, b)
    varphi = qan.varphi(p.transpose(1, 2))
    assert torch.allclose(out.relation[0, 1, 2], phi[0, :, 1] @ varphi[0, :, 2], atol=1e-5)


def test_quality_scales_local_features():
    # theta's last conv: weight 0, bias ln 3 -> S = ln 3, S_hat = sigmoid(ln 3) = 3 / 4
    qan = QAN(channels=8, branches=4, reduction=2, hidden=4).eval()
    with torch.no_grad():
        qan.theta[-1].weight.zero_()
        qan.theta[-1].bias.fill_(math.log(3.0))
    p = torch.randn(2, 4, 8)
    out = qan(p)
    assert torch.allclose(out.quality, torch.full((2, 4), 0.75))
    assert torch.allclose(out.weighted, 0.75 * p)


def test_every_branch_and_qan_parameter_gets_a_gradient():
    model = create_model(ModelConfig(stem="light", branches=4)).train()
    head = create_head("cosface", 512, 5, 64.0, 0.35)
    crit = CQACriterion(LossConfig(), head)
    out = model(torch.randn(4, 3, 112, 112))
    crit(out, torch.tensor([0, 1, 2, 3])).total.backward()
    watched = list(model.branches.named_parameters(prefix="branches")) + list(model.qan.named_parameters(prefix="qan"))
    assert len(watched) > 10
    for name, p in watched:
        assert p.grad is not None, f"{name} got no gradient"
        assert p.grad.abs().sum() > 0, f"{name} got a zero gradient"


def test_cal_gradient_reaches_lanet():
    # the diversity loss alone must move the attention branches
    model = create_model(ModelConfig(stem="light", branches=2)).train()
    out = model(torch.randn(2, 3, 112, 112))
    from cqa_core.losses import cal_loss

    cal_loss(out.attention_maps).backward()
    assert model.branches.lanets[0].conv2.weight.grad.abs().sum() > 0


def test_create_model_keyword_overrides_and_validation():
    assert create_model(stem="light", branches=8).config.branches == 8
    with pytest.raises(ValueError, match="unknown stem"):
        ModelConfig(stem="r200")
