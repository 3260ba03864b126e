"""QAN analysis: template regions, attention shares (hand-checkable), the effect of a mask."""

import numpy as np
import pytest
import torch

from cqa_core.config import ModelConfig
from cqa_core.data.template import ARCFACE_TEMPLATE
from cqa_core.explain import mask_effect, quality_report, region_area, region_masks, region_shares
from cqa_core.explain.common import ExplainError
from cqa_core.explain.quality import attention_share
from cqa_core.explain.tensors import as_batch
from cqa_core.explain.toy import plant_attention
from cqa_core.model import create_model


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return create_model(ModelConfig(stem="light", branches=4)).eval()


def test_regions_hold_their_landmarks_and_do_not_overlap():
    r = region_masks()
    for name, (x, y) in zip(("left_eye", "right_eye"), ARCFACE_TEMPLATE[:2], strict=True):
        assert r[name][int(round(y)), int(round(x))] == 1.0
    mx, my = ARCFACE_TEMPLATE[3:].mean(axis=0)
    assert r["mouth"][int(round(my)), int(round(mx))] == 1.0
    nx, ny = ARCFACE_TEMPLATE[2]
    assert r["nose"][int(round(ny)) - 3, int(round(nx))] == 1.0
    assert sum(r.values()).max() == 1.0  # disjoint
    assert 0.01 < region_area()["left_eye"] < 0.05


def test_shares_by_hand():
    r = region_masks()
    maps = np.stack([r["mouth"], np.ones((112, 112), np.float32)])  # (2, 112, 112)
    s = region_shares(maps)
    assert s["mouth"][0] == pytest.approx(1.0) and s["left_eye"][0] == pytest.approx(0.0)
    assert s["nose"][1] == pytest.approx(region_area()["nose"], abs=1e-6)  # uniform map = area
    half = np.zeros((112, 112), np.float32)
    half[56:] = 1.0
    assert attention_share(np.ones((112, 112)), half) == pytest.approx(0.5)


def test_quality_report_shapes(model):
    rep = quality_report(model, torch.zeros(2, 3, 112, 112))
    assert rep.quality.shape == (2, 4) and rep.relation.shape == (2, 4, 4)
    assert rep.maps112.shape == (2, 4, 112, 112) and rep.shares["mouth"].shape == (2, 4)
    assert ((rep.quality > 0) & (rep.quality < 1)).all()


def test_mask_effect_matches_separate_forwards_of_the_clean_and_masked_face(model):
    # Each number is checked against its own forward pass, so swapping clean and masked, or
    # reporting clean - masked, fails.
    face = np.random.default_rng(0).integers(0, 256, (112, 112, 3), dtype=np.uint8)
    masked = face.copy()
    masked[70:] = 200  # a flat "mask" over the lower face
    eff = mask_effect(model, face, masked)
    assert eff.alpha[80, 50] == 1.0 and eff.alpha[10, 50] == 0.0
    with torch.no_grad():
        clean_out, masked_out = model(as_batch(face, torch.device("cpu"))), model(as_batch(masked, torch.device("cpu")))
    np.testing.assert_allclose(eff.quality_clean, clean_out.quality[0].numpy(), atol=1e-5)
    np.testing.assert_allclose(eff.quality_masked, masked_out.quality[0].numpy(), atol=1e-5)
    assert np.abs(eff.quality_delta).max() > 1e-4  # the mask moves the scores: the check above bites
    np.testing.assert_allclose(eff.quality_delta, masked_out.quality[0].numpy() - clean_out.quality[0].numpy(),
                               atol=1e-5)
    cos = torch.nn.functional.cosine_similarity(clean_out.embedding, masked_out.embedding).item()
    assert eff.similarity == pytest.approx(cos, abs=1e-5) and eff.similarity < 0.9999


def test_mask_effect_on_a_model_that_cannot_see_the_image():
    # plant_attention: every branch's map is a constant that ignores the pixels, so a mask changes
    # nothing (quality delta 0, similarity 1) and each branch's share inside the mask is the mask's
    # area: rows 70..111 = 42 / 112 = 0.375 of the face.
    torch.manual_seed(0)
    model = plant_attention(create_model(ModelConfig(stem="light", branches=4)),
                            torch.tensor([0.2, 0.4, 0.6, 0.8])[:, None, None].expand(4, 7, 7).clone()).eval()
    face = np.random.default_rng(0).integers(0, 256, (112, 112, 3), dtype=np.uint8)
    masked = face.copy()
    masked[70:] = 200
    eff = mask_effect(model, face, masked, alpha=(np.arange(112) >= 70)[:, None].repeat(112, 1).astype(np.float32))
    np.testing.assert_allclose(eff.quality_delta, 0.0, atol=1e-6)
    assert eff.similarity == pytest.approx(1.0, abs=1e-5)
    np.testing.assert_allclose(eff.mask_share_clean, 0.375, atol=1e-5)
    np.testing.assert_allclose(eff.mask_share_masked, 0.375, atol=1e-5)


def test_mask_effect_with_degrade_module(model):
    pytest.importorskip("cqa_core.data.degrade")
    face = np.random.default_rng(1).integers(0, 256, (112, 112, 3), dtype=np.uint8)
    eff = mask_effect(model, face, kind="surgical", seed=0)
    assert eff.masked_image.shape == (112, 112, 3) and eff.alpha.shape == (112, 112)
    assert eff.alpha.max() > 0


def test_mask_effect_rejects_photos(model):
    with pytest.raises(ExplainError, match="112x112"):
        mask_effect(model, np.zeros((50, 50, 3), np.uint8), np.zeros((50, 50, 3), np.uint8))
