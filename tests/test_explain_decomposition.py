"""The exact (b+1)x(b+1) split of a pair's cosine and the leave-one-branch-out similarity."""

import numpy as np
import pytest
import torch

from cqa_core.config import ModelConfig
from cqa_core.explain import decompose, folded_head
from cqa_core.explain.common import ExplainError
from cqa_core.explain.decomposition import leave_one_out_rerun
from cqa_core.explain.toy import calibrate
from cqa_core.model import create_model


@pytest.fixture(scope="module")
def model(calibrated_model):
    return calibrated_model


@pytest.fixture(scope="module")
def faces():
    g = torch.Generator().manual_seed(2)
    return torch.rand(4, 3, 112, 112, generator=g) * 2 - 1, torch.rand(4, 3, 112, 112, generator=g) * 2 - 1


def test_bn_running_stats_are_nontrivial(model):
    bn = model.features
    assert bn.running_mean.abs().max() > 1e-3 and (bn.running_var - 1).abs().max() > 1e-3


def test_matrix_sums_to_the_cosine(model, faces):
    d = decompose(model, *faces)
    assert d.matrix.shape == (4, 5, 5)
    np.testing.assert_allclose(d.matrix.sum(axis=(1, 2)), d.similarity, atol=1e-5)
    with torch.no_grad():
        cos = torch.nn.functional.cosine_similarity(model(faces[0]).embedding, model(faces[1]).embedding)
    np.testing.assert_allclose(d.similarity, cos.numpy(), atol=1e-6)
    assert d.similarity.std() > 1e-3  # the faces are not all alike, the test is not vacuous


def test_folded_head_reproduces_the_embedding(model, faces):
    w, c = folded_head(model)
    with torch.no_grad():
        out = model(faces[0])
        z = (out.local_features * out.quality[..., None]).flatten(1)  # (B, b*C)
        np.testing.assert_allclose((z @ w.T + c).numpy(), out.embedding.numpy(), atol=1e-4, rtol=1e-4)
    assert decompose(model, *faces).residual.max() < 1e-3


def test_leave_one_out_equals_zeroing_the_branch_without_qan():
    # without QAN nothing re-weights the other branches, so dropping u_i == zeroing P_i in the real head
    torch.manual_seed(3)
    model = calibrate(create_model(ModelConfig(stem="light", branches=3, qan=False)))
    g = torch.Generator().manual_seed(4)
    a, b = (torch.rand(2, 3, 112, 112, generator=g) * 2 - 1).chunk(2)
    d = decompose(model, a, b)
    with torch.no_grad():
        oa, ob = model(a), model(b)
        def head(out, i):
            p = out.local_features.clone()  # (1, b, C)
            p[:, i] = 0
            return model.features(model.fc(p.flatten(1)))  # (1, 512)

        for i in range(3):
            cos = torch.nn.functional.cosine_similarity(head(oa, i), head(ob, i)).item()
            assert d.leave_one_out[0, i] == pytest.approx(cos, abs=1e-5)


def test_training_mode_is_refused():
    model = create_model(ModelConfig(stem="light", branches=2)).train()
    with pytest.raises(ExplainError, match="eval"):
        folded_head(model)


def test_rerun_variant_equals_term_drop_without_qan(faces):
    torch.manual_seed(3)
    no_qan = calibrate(create_model(ModelConfig(stem="light", branches=3, qan=False)))
    a, b = faces[0][:2], faces[1][:2]
    np.testing.assert_allclose(leave_one_out_rerun(no_qan, a, b), decompose(no_qan, a, b).leave_one_out, atol=1e-5)


def test_with_qan_term_drop_keeps_the_old_quality_and_the_rerun_does_not(model, faces):
    # Drop-the-term = feed P_i = 0 through the real FC + BN with the *other* branches' quality
    # frozen at their values with branch i present (checked here through the real head, not the
    # decomposition's formula). Leave-one-out with QAN re-run lets zeroing P_i change every other
    # branch's S_hat_j through the relation graph, so the two numbers must differ.
    a, b = faces[0][:2], faces[1][:2]
    d = decompose(model, a, b)
    rerun = leave_one_out_rerun(model, a, b)
    with torch.no_grad():
        oa, ob = model(a), model(b)

        def frozen(out, i):
            z = out.local_features * out.quality[..., None]  # (B, b, C) with the original S_hat
            z[:, i] = 0
            return model.features(model.fc(z.flatten(1)))  # (B, 512)

        def requalified(out, i):
            p = out.local_features.clone()  # (B, b, C)
            p[:, i] = 0
            return model.qan(p).quality  # (B, b) S_hat after the re-run

        for i in range(4):
            cos = torch.nn.functional.cosine_similarity(frozen(oa, i), frozen(ob, i)).numpy()
            np.testing.assert_allclose(d.leave_one_out[:, i], cos, atol=1e-5)
            others = [j for j in range(4) if j != i]
            moved = (requalified(oa, i) - oa.quality)[:, others].abs().max().item()
            assert moved > 1e-3, f"zeroing branch {i} left the other quality scores unchanged"
    assert np.abs(rerun - d.leave_one_out).max() > 1e-3, (rerun, d.leave_one_out)
