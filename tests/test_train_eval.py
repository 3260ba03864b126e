"""Periodic verification inside training: accuracy logged, best checkpoint kept, off when data is missing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cqa_core.config import DataConfig, ModelConfig, TrainConfig
from cqa_core.training.callbacks import Callback
from cqa_core.training.data import build_dataset
from cqa_core.training.trainer import Trainer
from cqa_core.training.verify import PairVerifier

pytest.importorskip("cqa_core.metrics")


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
    assert [m["step"] for m in seen] == [2, 3]  # every 2 steps, and at the last step (3)
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
def test_lfw_dev_test_pairs_align_what_they_need(lfw_root: Path, tmp_path: Path) -> None:
    """``eval_pairs="auto"`` on a fresh machine: an empty cache root (in tmp) gets the
    crops of the 20 pairs it uses, evenly spaced over pairsDevTest (10 same, 10 different)."""
    import torch

    from cqa_core.checkpoint import load_default
    from cqa_core.data.align_run import list_images

    # the cache root is passed down (``cqa train`` passes its settings'), never read from the environment
    verifier = PairVerifier.build(TrainConfig(eval_pairs="auto", eval_max_pairs=20), cache_root=tmp_path / "cache")
    assert verifier is not None
    # pairsDevTest = 500 same then 500 different lines; every 50th line from the first
    lines = [ln.split() for ln in (lfw_root / "pairsDevTest.txt").read_text().splitlines()[1:]][::50]
    assert len(lines) == 20 and verifier.issame == [True] * 10 + [False] * 10
    photos = set()
    for (a, b), f in zip(verifier.paths, lines, strict=True):
        names = (f[0], int(f[1]), f[0], int(f[2])) if len(f) == 3 else (f[0], int(f[1]), f[2], int(f[3]))
        assert (a.parent.name, b.parent.name) == (names[0], names[2])
        assert a.stem == f"{names[0]}_{names[1]:04d}" and b.stem == f"{names[2]}_{names[3]:04d}"
        assert tmp_path / "cache" in a.parents  # the crops live in the fresh cache
        photos |= {(names[0], names[1]), (names[2], names[3])}
    aligned = aligned_dir_files(tmp_path / "cache", list_images)
    assert len(aligned) == len(photos)  # only the photos the pairs use, not all 13,233
    model = load_default()
    result = verifier(model, torch.device("cpu"))
    assert result["pairs"] == 20 and result["accuracy"] >= 0.6  # an untrained model scores ~0.5
    e1 = verifier.embed(model, [a for a, _ in verifier.paths], torch.device("cpu"))  # (20, 512)
    e2 = verifier.embed(model, [b for _, b in verifier.paths], torch.device("cpu"))  # (20, 512)
    cos = (e1 * e2).sum(1)  # (20,)
    assert cos[:10].mean() > cos[10:].mean() + 0.1, cos  # same people look more alike than different ones


def aligned_dir_files(cache: Path, list_images) -> list[str]:
    """Image files under the single aligned-crop folder created in ``cache``."""
    (folder,) = [p for p in cache.glob("aligned*/*") if p.is_dir()]
    return list_images(folder)
