"""Periodic verification inside training: accuracy logged, best checkpoint kept, off when data is missing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cqa_core.config import DataConfig, ModelConfig, TrainConfig
from cqa_core.train import Trainer
from cqa_core.training.callbacks import Callback
from cqa_core.training.data import build_dataset
from cqa_core.training.verify import PairVerifier

pytest.importorskip("cqa_core.evaluate")


def pairs_from_folder(root: Path) -> PairVerifier:
    """Same pairs within a class, different pairs across classes, 10 of each."""
    classes = sorted(p for p in root.iterdir() if p.is_dir())
    files = [sorted(c.iterdir()) for c in classes]
    same = [(files[i % 4][0], files[i % 4][1 + i % 5]) for i in range(10)]
    diff = [(files[i % 4][i % 6], files[(i + 1) % 4][(i + 2) % 6]) for i in range(10)]
    return PairVerifier(same + diff, [True] * 10 + [False] * 10, [i % 10 for i in range(20)])


def test_eval_logs_accuracy_and_keeps_best(face_folder: Path, tmp_path: Path) -> None:
    c = TrainConfig(model=ModelConfig(stem="light"), data=DataConfig(root=str(face_folder), num_workers=0),
                    batch_size=8, max_steps=3, eval_every=2, keep_last=1, warmup_epochs=0.0,
                    out_dir=str(tmp_path / "run"), eval_pairs=None, progress=False, tensorboard=False)
    seen: list[dict] = []

    class OnEval(Callback):
        def on_eval(self, trainer, metrics):
            seen.append(metrics)

    trainer = Trainer(c, dataset=build_dataset(c), callbacks=[OnEval()])
    trainer.verifier = pairs_from_folder(face_folder)
    trainer.fit()
    assert [m["step"] for m in seen] == [2, 3]  # every 2 steps, and at the epoch end (3 steps)
    assert all(0.0 <= m["accuracy"] <= 1.0 and m["pairs"] == 20 for m in seen)
    best = trainer.best
    assert best["accuracy"] == max(m["accuracy"] for m in seen)
    kept = sorted(p.name for p in (Path(c.out_dir) / "checkpoints").iterdir())
    assert Path(best["path"]).name in kept and "step_00000003" in kept
    lines = [json.loads(x) for x in (Path(c.out_dir) / "metrics.jsonl").read_text().splitlines()]
    assert any(x["kind"] == "eval" for x in lines)


def test_verification_is_off_when_pairs_are_missing(tmp_path: Path) -> None:
    assert PairVerifier.build(TrainConfig(eval_pairs=str(tmp_path / "nope.txt"))) is None
    assert PairVerifier.build(TrainConfig(eval_pairs=None)) is None


@pytest.mark.data
@pytest.mark.slow
def test_lfw_dev_test_pairs_through_the_aligned_cache() -> None:
    """``eval_pairs="auto"``: LFW pairsDevTest, evenly subsampled to keep same and different pairs."""
    import torch

    from cqa_core.model import create_model

    verifier = PairVerifier.build(TrainConfig(eval_pairs="auto", eval_max_pairs=100), allow_align=False)
    if verifier is None:
        pytest.skip("LFW pairsDevTest or its aligned cache is not available (run `cqa align` first)")
    assert len(verifier.paths) == 100 and sum(verifier.issame) == 50
    result = verifier(create_model(ModelConfig(stem="light")), torch.device("cpu"))
    assert 0.0 <= result["accuracy"] <= 1.0 and result["pairs"] == 100
