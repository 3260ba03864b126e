"""pytorch-grad-cam through the TensorOutput adapter, captum IG, captum occlusion (explain.blackbox) on
CQA-Face, and no leftover hooks."""

import numpy as np
import pytest
import torch

from cqa_core.config import ModelConfig
from cqa_core.explain import (
    CAM_METHODS,
    TensorOutput,
    analyse,
    integrated_gradients,
    library_cam,
    similarity_gradcam,
)
from cqa_core.explain.blackbox import occlusion
from cqa_core.explain.common import ExplainError
from cqa_core.explain.toy import WindowStem, calibrate
from cqa_core.model import create_model
from cqa_core.recognizers.cqa import from_cqa


def _pixels(x: torch.Tensor) -> np.ndarray:
    """Model input in [-1, 1] (N, 3, H, W) -> the uint8 chips (N, H, W, 3) it came from."""
    return np.clip((x * 127.5 + 127.5).round(), 0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()


@pytest.fixture(scope="module")
def model(calibrated_model):
    return calibrated_model


@pytest.fixture(scope="module")
def faces():
    g = torch.Generator().manual_seed(5)
    return torch.rand(2, 3, 112, 112, generator=g) * 2 - 1, torch.rand(2, 3, 112, 112, generator=g) * 2 - 1


def assert_no_hooks(model: torch.nn.Module) -> None:
    """Every kind of module hook, per module and global, is empty."""
    from torch.nn.modules import module as mod

    for name, m in model.named_modules():
        for attr in ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_backward_pre_hooks",
                     "_forward_hooks_with_kwargs", "_forward_pre_hooks_with_kwargs", "_state_dict_hooks"):
            assert not getattr(m, attr, {}), f"{name or 'model'} keeps {attr}"
        assert not getattr(m, "_is_full_backward_hook", None), f"{name} keeps a full backward hook"
    for attr in ("_global_forward_hooks", "_global_forward_pre_hooks", "_global_backward_hooks",
                 "_global_backward_pre_hooks"):
        assert not getattr(mod, attr, {}), f"global {attr} left behind"


def test_tensor_output_adapter_returns_one_field(model, faces):
    with torch.no_grad():
        assert torch.equal(TensorOutput(model)(faces[0]), model(faces[0]).embedding)
        assert TensorOutput(model, "quality")(faces[0]).shape == (2, 4)


@pytest.mark.parametrize("method", ["GradCAMPlusPlus", "XGradCAM", "EigenCAM", "LayerCAM", "HiResCAM", "AblationCAM"])
def test_library_methods_run_on_cqa_face(model, faces, method):
    maps = library_cam(model, *faces, method=method)
    assert maps.shape == (2, 112, 112) and np.isfinite(maps).all()
    assert_no_hooks(model)


@pytest.mark.slow
@pytest.mark.parametrize("method", [m for m in CAM_METHODS if m not in ("GradCAM", "AblationCAM")])
def test_every_listed_library_method_runs(model, faces, method):
    maps = library_cam(model, faces[0][:1], faces[1][:1], method=method)
    assert maps.shape == (1, 112, 112) and np.isfinite(maps).all()
    assert_no_hooks(model)


def test_unknown_library_method_is_a_plain_error(model, faces):
    with pytest.raises(ExplainError, match="unknown pytorch-grad-cam method"):
        library_cam(model, *faces, method="NoSuchCAM")


def test_integrated_gradients_converges_to_the_score_gap(model, faces):
    # a "same person" pair (b = a + noise): f(a) ~ 1, far from f(grey), so 1 % is a real bound
    a = faces[0]
    b = a + 0.1 * torch.randn(a.shape, generator=torch.Generator().manual_seed(6))
    attr = integrated_gradients(model, a, b)
    with torch.no_grad():
        eb = model(b).embedding
        f_x = torch.nn.functional.cosine_similarity(model(a).embedding, eb)
        f_0 = torch.nn.functional.cosine_similarity(model(torch.zeros_like(a)).embedding, eb)
    gap = (f_x - f_0).numpy()  # what the attributions must sum to (completeness)
    assert np.abs(gap).min() > 0.05  # non-trivial target
    total = attr.map.sum(axis=(1, 2))  # (2,)
    assert (np.abs(total - gap) <= 0.01 * np.abs(gap) + 1e-6).all(), (total, gap)
    np.testing.assert_allclose(attr.gap, gap, atol=1e-5)
    np.testing.assert_allclose(attr.delta, total - gap, atol=1e-4)  # the reported delta is the real miss
    assert attr.converged.all() and (attr.steps >= 32).all() and attr.map.shape == (2, 112, 112)


def test_integrated_gradients_says_so_when_the_step_cap_is_hit(model, faces, caplog):
    # a zero tolerance can never be met: the loop stops at the cap and flags it
    with caplog.at_level("WARNING", logger="cqa_core.explain.attribution"):
        attr = integrated_gradients(model, faces[0][:1], faces[1][:1], rtol=0.0, atol=0.0, max_steps=8)
    assert attr.steps.tolist() == [8] and attr.converged.tolist() == [False]
    assert "cap" in caplog.text
    fixed = integrated_gradients(model, faces[0][:1], faces[1][:1], steps=4)  # a fixed count: one run
    assert fixed.steps.tolist() == [4]


def test_occlusion_sign_and_support_on_a_window_model():
    # Only pixels 32..79 x 32..79 reach the embedding (WindowStem). For an identical pair the
    # similarity is at its maximum 1, so greying out any window can only lower it: occlusion
    # (= f(x) - f(x occluded)) is >= 0 everywhere, > 0 on the window, and 0 on pixels whose every
    # 16 x 16 occluding window misses the 32..79 square (rows / columns 0..15 and 96..111): 0 up to
    # float noise, because f(x) and the occluded copies run in batches of different sizes and on
    # some CPUs oneDNN sums them in another order (3.6e-7 seen here, 300x below the window's 1e-4).
    torch.manual_seed(0)
    window = torch.zeros(7, 7)
    window[2:5, 2:5] = 1
    model = create_model(ModelConfig(stem="light", branches=4))
    model.stem = WindowStem(model.stem.out_channels, window)
    model = calibrate(model)
    a = _pixels(torch.rand(1, 3, 112, 112, generator=torch.Generator().manual_seed(7)) * 2 - 1)
    res = occlusion(from_cqa(model), a, a, grid=13)[0]  # (112, 112): 16 x 16 windows, stride 8
    assert res.min() >= -1e-6
    assert res[40:72, 40:72].min() > 1e-4
    far = np.ones((112, 112), bool)
    far[16:96, 16:96] = False
    assert np.abs(res[far]).max() <= 1e-6


def test_no_hook_stays_registered_after_any_explainer(model, faces):
    a, b = faces
    similarity_gradcam(model, a, b)
    library_cam(model, a, b, method="GradCAM")
    integrated_gradients(model, a[:1], b[:1], steps=4)
    occlusion(from_cqa(model), _pixels(a[:1]), _pixels(b[:1]), grid=1)
    img = np.random.default_rng(0).integers(0, 256, (112, 112, 3), dtype=np.uint8)
    analyse(model, img, img[:, ::-1].copy(), methods=("gradcam", "GradCAMPlusPlus"))
    assert_no_hooks(model)
    assert all(p.grad is None for p in model.parameters())  # explainers leave no parameter gradients


def test_explainers_run_in_eval_mode_and_leave_bn_statistics_alone(faces):
    torch.manual_seed(1)
    model = calibrate(create_model(ModelConfig(stem="light", branches=2))).train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    similarity_gradcam(model, *faces)
    library_cam(model, *faces)
    integrated_gradients(model, faces[0][:1], faces[1][:1], steps=2)
    assert model.training
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), f"{k} changed"
