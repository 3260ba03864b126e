"""Branch attention CAMs, the photo warp and hook-free Grad-CAM (against pytorch-grad-cam)."""

import numpy as np
import pytest
import torch

from cqa_core.config import ModelConfig
from cqa_core.explain import (
    attention_cams,
    crop_support,
    library_cam,
    similarity_gradcam,
    warp_to_photo,
)
from cqa_core.explain.common import ExplainError
from cqa_core.explain.maprender import overlay, scale_of
from cqa_core.explain.render import branch_overlays
from cqa_core.explain.toy import plant_attention
from cqa_core.model import create_model


@pytest.fixture(scope="module")
def model(calibrated_model):
    return calibrated_model


@pytest.fixture(scope="module")
def faces():
    g = torch.Generator().manual_seed(1)
    return torch.rand(3, 3, 112, 112, generator=g) * 2 - 1, torch.rand(3, 3, 112, 112, generator=g) * 2 - 1


def test_planted_attention_comes_back_exactly():
    torch.manual_seed(0)
    planted = torch.rand(4, 7, 7) * 0.9 + 0.05  # (b, 7, 7) in (0.05, 0.95)
    m = plant_attention(create_model(ModelConfig(stem="light", branches=4)), planted).eval()
    cams = attention_cams(m, torch.zeros(2, 3, 112, 112), size=7)  # (2, 4, 7, 7)
    np.testing.assert_allclose(cams[0], planted.numpy(), atol=1e-6)
    np.testing.assert_allclose(cams[1], planted.numpy(), atol=1e-6)


def test_planted_single_cell_lands_in_its_16px_block():
    planted = torch.full((4, 7, 7), 1e-6)
    planted[2, 1, 5] = 1 - 1e-6  # branch 2 looks at row 1, column 5 only
    m = plant_attention(create_model(ModelConfig(stem="light", branches=4)), planted).eval()
    cam = attention_cams(m, torch.zeros(1, 3, 112, 112))[0, 2]  # (112, 112)
    y, x = np.unravel_index(cam.argmax(), cam.shape)
    assert 16 <= y < 32 and 80 <= x < 96  # cell (1, 5) covers rows 16..31, cols 80..95
    assert cam.max() <= 1.0 and cam.min() >= 0.0


def test_warp_to_photo_inverts_the_alignment_affine():
    # photo 224x224 scaled by 1/2 into the 112 crop: aligned (x, y) = photo (x, y) / 2
    affine = np.array([[0.5, 0.0, 0.0], [0.0, 0.5, 0.0]])
    m = np.zeros((112, 112), np.float32)
    m[32:48, 64:80] = 1.0
    back = warp_to_photo(m, affine, (224, 224))  # (224, 224)
    assert back.shape == (224, 224)
    ys, xs = np.nonzero(back > 0.5)
    assert ys.min() >= 63 and ys.max() <= 96 and xs.min() >= 127 and xs.max() <= 160
    assert back[80, 144] == pytest.approx(1.0)
    assert back[10, 10] == 0.0


def test_warp_rejects_singular_affine():
    with pytest.raises(ExplainError):
        warp_to_photo(np.zeros((112, 112)), np.zeros((2, 3)), (50, 50))


def test_overlay_leaves_pixels_outside_the_crop_untouched():
    affine = np.array([[0.5, 0.0, 0.0], [0.0, 0.5, 0.0]])  # crop = photo's top-left 224 x 224
    photo = np.full((300, 300, 3), 77, np.uint8)
    support = crop_support(affine, (300, 300))
    assert support[100, 100] == 1.0 and support[250, 250] == 0.0
    heat = np.ones((300, 300))
    out = overlay(photo, heat, scale_of(heat, "attention", "attention weight", False), 0.6, support)
    assert (out[250, 250] == 77).all() and not (out[100, 100] == 77).all()


def test_branch_overlays_share_one_scale_and_keep_the_photo_shape():
    photo = np.full((50, 60, 3), 100, np.uint8)
    low, high = np.full((50, 60), 0.2), np.full((50, 60), 0.8)
    ovs = branch_overlays(photo, np.stack([low, high]), np.array([0.9, 0.5]), alpha=1.0)
    assert [o.image.dtype for o in ovs] == [np.uint8, np.uint8] and ovs[0].image.shape == (50, 60, 3)
    assert [o.quality for o in ovs] == [0.9, 0.5]
    # one scale 0..0.8 for both: a map of 0.2 is not drawn in the colour of the largest weight
    assert not np.array_equal(ovs[0].image[0, 0], ovs[1].image[0, 0])


def test_stem_output_is_the_feature_map(model, faces):
    with torch.no_grad():
        assert torch.equal(model.stem(faces[0]), model(faces[0]).feature_map)


def test_hook_free_gradcam_equals_pytorch_grad_cam(model, faces):
    a, b = faces
    ours = similarity_gradcam(model, a, b)
    theirs = library_cam(model, a, b, method="GradCAM")
    assert ours.map_a.shape == theirs.shape == (3, 112, 112)
    np.testing.assert_allclose(ours.map_a, theirs, atol=1e-4)
    # face b's map: the same target seen from the other side
    np.testing.assert_allclose(ours.map_b, library_cam(model, b, a, method="GradCAM"), atol=1e-4)


def test_gradcam_similarity_is_the_model_cosine(model, faces):
    a, b = faces
    with torch.no_grad():
        cos = torch.nn.functional.cosine_similarity(model(a).embedding, model(b).embedding)
    np.testing.assert_allclose(similarity_gradcam(model, a, b).similarity, cos.numpy(), atol=1e-6)


def test_gradcam_accepts_one_partner_for_many_faces(model, faces):
    res = similarity_gradcam(model, faces[0], faces[1][:1], normalise=False)
    assert res.map_a.shape == (3, 112, 112) and res.raw_a.shape == (3, 7, 7)
    assert (res.raw_a >= 0).all()
