"""Training degradations with visibility maps, the QAN quality target, and distillation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from cqa_core.config import (
    AugmentConfig,
    DataConfig,
    DistillConfig,
    LossConfig,
    ModelConfig,
    TrainConfig,
)
from cqa_core.data.augment import AugmentedFaces, Augmenter, blur_visibility, occluder_shape
from cqa_core.losses import quality_loss, quality_targets
from cqa_core.training.distill import DistillLoss, load_targets


def face(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (112, 112, 3)).astype(np.uint8)


def test_blur_visibility_hand_values() -> None:
    assert blur_visibility(0.0) == 1.0
    assert blur_visibility(2.5) == pytest.approx(0.5)  # 1 / (1 + 1)
    assert blur_visibility(5.0) == pytest.approx(0.2)  # 1 / (1 + 4)


def test_occluder_changes_only_covered_pixels_and_zeroes_visibility() -> None:
    img = face(1)
    out, vis = Augmenter(AugmentConfig(p_occluder=1.0))(img, np.random.default_rng(7))
    replay = np.random.default_rng(7)
    [replay.random() for _ in range(5)]  # the augmenter's p_jitter, p_color, p_gray, p_mask, p_occluder draws
    cover = occluder_shape(replay)
    assert 0.03 < cover.mean() < 0.6
    np.testing.assert_array_equal(vis, 1.0 - cover)
    changed = np.abs(out.astype(int) - img.astype(int)).max(axis=2) > 0
    assert not changed[cover == 0].any()  # nothing outside the occluder moves
    assert changed[cover == 1].mean() > 0.9


@pytest.mark.data
def test_mask_visibility_is_one_minus_alpha(shared_data: Path) -> None:
    from cqa_core.data.degrade import apply_mask

    img = face(2)
    rng = np.random.default_rng(3)
    out, vis = Augmenter(AugmentConfig(p_mask=1.0))(img, rng)
    # replay the augmenter's draws: p_jitter, p_color, p_gray, p_mask checks, then the mask seed
    replay = np.random.default_rng(3)
    [replay.random() for _ in range(4)]
    masked, alpha = apply_mask(img, "random", seed=int(replay.integers(1, 2**31)))
    np.testing.assert_array_equal(out, masked)
    np.testing.assert_allclose(vis, 1.0 - alpha)
    assert vis[100, 56] < 0.1 and vis[40, 56] == 1.0  # chin covered, eyes free


def test_blur_scales_visibility_everywhere() -> None:
    _, vis = Augmenter(AugmentConfig(p_blur=1.0, blur_sigma=(2.5, 2.5)))(face(3), np.random.default_rng(0))
    np.testing.assert_allclose(vis, 0.5)


def test_augmented_faces_is_keyed_and_deterministic() -> None:
    base = [(torch.from_numpy(face(i)).permute(2, 0, 1).contiguous(), i % 2) for i in range(4)]
    ds = AugmentedFaces(base, AugmentConfig(p_occluder=0.5, p_blur=0.5), targets=torch.eye(4))
    a, b, c = ds[(1, 11)], ds[(1, 11)], ds[(1, 12)]
    assert torch.equal(a[0], b[0]) and torch.equal(a[2]["visibility"], b[2]["visibility"])
    assert a[1] == 1 and torch.equal(a[2]["target"], torch.eye(4)[1])
    assert not (torch.equal(a[0], c[0]) and torch.equal(a[2]["visibility"], c[2]["visibility"]))


def test_quality_targets_are_visible_attention_shares() -> None:
    maps = torch.tensor([[[[1.0, 0.0], [0.0, 0.0]], [[0.0, 0.0], [0.0, 1.0]], [[0.5, 0.5], [0.5, 0.5]]]])  # (1, 3, 2, 2)
    vis = torch.zeros(1, 4, 4)
    vis[:, :2] = 1.0  # top half visible -> pooled [[1, 1], [0, 0]]
    np.testing.assert_allclose(quality_targets(maps, vis).numpy(), [[1.0, 0.0, 0.5]])
    # BCE at the target itself is the target's entropy; at q = 0.5 for target 0.5: ln 2
    q = torch.tensor([[0.5, 0.5, 0.5]])
    expected = (np.log(2) + -np.log(0.5) + -np.log(0.5)) / 3  # t=1: -ln q; t=0: -ln(1-q); t=.5: ln 2
    assert quality_loss(q, maps, vis).item() == pytest.approx(expected, rel=1e-5)


def test_distill_loss_hand_values() -> None:
    loss = DistillLoss(2, 2)
    with torch.no_grad():
        loss.proj.weight.copy_(torch.eye(2))
    e = torch.tensor([[1.0, 0.0], [0.0, 2.0]])  # student: orthogonal, cos 0
    t = torch.tensor([[1.0, 0.0], [0.5, 3**0.5 / 2]])  # teacher: cos 60 deg = 0.5
    cos, rel = loss(e, t)
    # cos loss: sample 0 matches (1 - 1), sample 1: cos((0, 2), (0.5, .866)) = 0.866
    assert cos.item() == pytest.approx((0.0 + (1 - 3**0.5 / 2)) / 2, abs=1e-6)
    assert rel.item() == pytest.approx(0.25, abs=1e-6)  # off-diagonal (0 - 0.5)^2, twice, mean


def test_load_targets_centres_normalises_and_orders(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    root = tmp_path / "faces"
    samples = [(str(root / "b" / "1.jpg"), 1), (str(root / "a" / "0.jpg"), 0)]
    emb = torch.tensor([[1.0, 5.0], [3.0, 5.0]])  # rows for a/0.jpg, b/1.jpg; mean (2, 5)
    save_file({"embeddings": emb}, str(tmp_path / "t.safetensors"), metadata={"paths": '["a/0.jpg", "b/1.jpg"]'})
    out = load_targets(tmp_path / "t.safetensors", samples, root)
    np.testing.assert_allclose(out.numpy(), [[1.0, 0.0], [-1.0, 0.0]])  # b: (3-2, 0) ; a: (1-2, 0)
    with pytest.raises(ValueError, match="no teacher embedding"):
        load_targets(tmp_path / "t.safetensors", [(str(root / "c" / "9.jpg"), 2)], root)


def run_config(face_folder: Path, out: Path, teacher: str, steps: int) -> TrainConfig:
    return TrainConfig(model=ModelConfig(stem="light"), data=DataConfig(root=str(face_folder), num_workers=0),
                       loss=LossConfig(scale=16.0, margin=0.1, quality_weight=1.0),
                       augment=AugmentConfig(p_occluder=0.5, p_blur=0.3, p_jitter=0.5, p_color=0.3),
                       distill=DistillConfig(teacher=teacher, batch_size=8),
                       batch_size=8, max_steps=steps, epochs=3, warmup_epochs=0.0, lr=0.01, out_dir=str(out),
                       eval_pairs=None, progress=False, tensorboard=False, log_every=1, seed=2)


def test_augmented_distilled_run_trains_and_resumes_exactly(face_folder: Path, tmp_path: Path) -> None:
    from test_train_resume import assert_bitwise_equal

    from cqa_core.checkpoint import save_model
    from cqa_core.model import create_model
    from cqa_core.training.callbacks import Callback
    from cqa_core.training.trainer import Trainer

    torch.manual_seed(0)
    teacher = save_model(tmp_path / "teacher.safetensors", create_model(ModelConfig(stem="light", branches=2)))

    class Keep(Callback):
        def __init__(self) -> None:
            self.rows: list[dict] = []

        def on_step(self, trainer, metrics) -> None:
            self.rows.append(metrics)

    keep = Keep()
    Trainer(run_config(face_folder, tmp_path / "ref", str(teacher), 4), callbacks=[keep]).fit()
    assert len(keep.rows) == 4 and {"quality_loss", "distill_cos", "distill_rel"} <= set(keep.rows[-1])
    assert all(np.isfinite(r["distill_cos"]) and 0 <= r["distill_cos"] <= 2 for r in keep.rows)
    cached = list((face_folder / "distill").glob("ckpt-teacher-*.safetensors"))
    assert len(cached) == 1  # computed once, beside the crops

    Trainer(run_config(face_folder, tmp_path / "run", str(teacher), 2)).fit()
    Trainer(run_config(face_folder, tmp_path / "run", str(teacher), 4), resume="").fit()
    assert_bitwise_equal(tmp_path / "ref" / "model.safetensors", tmp_path / "run" / "model.safetensors")
    final = "checkpoints/step_00000004/head.safetensors"  # margin head + distillation projection
    assert_bitwise_equal(tmp_path / "ref" / final, tmp_path / "run" / final)
