"""NaN / inf steps are skipped (no update, BN statistics kept) and K in a row stop the run."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from cqa_core.config import DataConfig, ModelConfig, TrainConfig
from cqa_core.training.callbacks import Callback
from cqa_core.training.data import build_dataset
from cqa_core.training.trainer import Trainer, TrainingDiverged


class PoisonedTrainer(Trainer):
    """Feeds a NaN image batch at the (0-based) optimiser steps in ``poison``."""

    poison: set[int] = set()

    def preprocess(self, images: torch.Tensor, micro: int, visibility=None):
        x, vis = super().preprocess(images, micro, visibility)
        return (x * float("nan") if self.step in self.poison else x), vis


class Record(Callback):
    def __init__(self) -> None:
        self.steps: list[int] = []

    def on_step(self, trainer, metrics) -> None:
        self.steps.append(metrics["step"])


def config(face_folder: Path, tmp_path: Path, **kw) -> TrainConfig:
    return TrainConfig(model=ModelConfig(stem="light"), data=DataConfig(root=str(face_folder), num_workers=0),
                       batch_size=8, warmup_epochs=0.0, out_dir=str(tmp_path / "run"), eval_pairs=None,
                       progress=False, tensorboard=False, log_every=1, max_bad_steps=3, **kw)


def snapshot(trainer: Trainer) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in trainer.net.state_dict().items()}


def test_single_bad_step_is_skipped(face_folder: Path, tmp_path: Path) -> None:
    c = config(face_folder, tmp_path, max_steps=4)
    trainer = PoisonedTrainer(c, dataset=build_dataset(c), callbacks=[rec := Record()])
    trainer.poison = {2}
    trainer.fit()
    assert rec.steps == [1, 2, 4]  # step 3 (0-based 2) skipped, training went on
    assert trainer.bad_steps == 0
    assert all(torch.isfinite(v).all() for v in trainer.net.state_dict().values() if v.is_floating_point())


def test_skipped_step_changes_nothing(face_folder: Path, tmp_path: Path) -> None:
    c = config(face_folder, tmp_path, max_steps=4)
    trainer = PoisonedTrainer(c, dataset=build_dataset(c))
    trainer.poison = {0}
    batch = next(iter(trainer.loader))
    before = snapshot(trainer)
    with pytest.warns(RuntimeWarning, match="non-finite loss"):
        assert trainer.train_step([batch]) is None
    after = snapshot(trainer)
    assert all(torch.equal(before[k], after[k]) for k in before)  # weights, momentum-free, BN stats
    assert all(p.grad is None for p in trainer.net.parameters())


def test_k_bad_steps_stop_with_clear_message_and_no_nan_checkpoint(face_folder: Path, tmp_path: Path) -> None:
    c = config(face_folder, tmp_path, max_steps=20, save_every=1)
    trainer = PoisonedTrainer(c, dataset=build_dataset(c))
    trainer.poison = set(range(2, 100))
    with pytest.warns(RuntimeWarning), pytest.raises(TrainingDiverged, match="3 non-finite steps in a row"):
        trainer.fit()
    assert trainer.step == 4  # 2 good steps, then bad steps 3, 4, 5 (0-based 2, 3, 4) -> stop
    from safetensors.torch import load_file

    for ckpt in (Path(c.out_dir) / "checkpoints").iterdir():
        for t in load_file(str(ckpt / "model.safetensors")).values():
            assert torch.isfinite(t.float()).all()


def test_nan_weights_are_never_checkpointed(face_folder: Path, tmp_path: Path) -> None:
    c = config(face_folder, tmp_path, max_steps=1)
    trainer = Trainer(c, dataset=build_dataset(c))
    with torch.no_grad():
        next(trainer.model.parameters()).fill_(float("nan"))
    assert trainer.save_checkpoint() is None
    assert not (Path(c.out_dir) / "checkpoints").exists()
