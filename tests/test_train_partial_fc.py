"""Partial FC: sampled class centres keep every positive and match the full head at rate 1."""

from __future__ import annotations

import torch

from cqa_core.model import create_head
from cqa_core.model.partial_fc import PartialFC


def test_rate_one_equals_full_head() -> None:
    torch.manual_seed(0)
    head = create_head("cosface", 16, 50, 64.0, 0.35)
    pfc = PartialFC(head, rate=1.0)
    emb, labels = torch.randn(6, 16), torch.tensor([0, 3, 3, 7, 49, 12])
    logits, target = pfc(emb, labels)
    torch.testing.assert_close(logits, head(emb, labels))
    assert torch.equal(target, labels)


def test_sample_keeps_positives_and_remaps_labels() -> None:
    torch.manual_seed(0)
    head = create_head("cosface", 16, 1000, 64.0, 0.35)
    pfc = PartialFC(head, rate=0.1, seed=1)
    emb, labels = torch.randn(8, 16), torch.tensor([5, 999, 5, 17, 400, 2, 3, 800])
    logits, target = pfc(emb, labels)
    index, _ = pfc.sample(labels, labels)
    assert logits.shape == (8, 100) and index.numel() == 100
    assert torch.equal(index[target], labels)  # remapped labels point at the right centres
    full = head(emb, labels)  # (8, 1000)
    torch.testing.assert_close(logits, full[:, index])
    pfc.step = 1
    assert not torch.equal(pfc.sample(labels, labels)[0], index)  # negatives re-drawn each step


def test_trainer_turns_partial_fc_on_from_threshold(tmp_path, face_folder) -> None:
    from cqa_core.config import DataConfig, ModelConfig, TrainConfig
    from cqa_core.train import Trainer
    from cqa_core.training.data import build_dataset

    c = TrainConfig(model=ModelConfig(stem="light"), data=DataConfig(root=str(face_folder), num_workers=0),
                    batch_size=8, out_dir=str(tmp_path / "run"), eval_pairs=None, progress=False,
                    tensorboard=False, partial_fc_threshold=4, partial_fc_rate=0.5, max_steps=1)
    trainer = Trainer(c, dataset=build_dataset(c))
    assert trainer.net.pfc is not None
    metrics = trainer.train_step([next(iter(trainer.loader))])
    assert metrics is not None
