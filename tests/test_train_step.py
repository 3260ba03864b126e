"""One optimiser step on real CelebA-299 faces lowers the loss; checkpoints refuse NaN weights."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from cqa_core.config import DataConfig, ModelConfig, TrainConfig
from cqa_core.settings import Settings
from cqa_core.training.trainer import Trainer

SHARED = Settings.from_env().data_root
CELEBA = SHARED / "celeba299"


class TensorFaces(torch.utils.data.Dataset):
    """In-memory (uint8 (3, 112, 112), label) items, the datasets' item contract."""

    def __init__(self, images: torch.Tensor, labels: list[int]) -> None:
        self.images, self.labels = images, labels
        self.num_classes = max(labels) + 1

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return self.images[i], self.labels[i]


def celeba_batch(n_ids: int = 8, per_id: int = 4) -> TensorFaces:
    """32 real faces: the first 8 identities with >= 4 photos, centre 150 px crop -> 112 x 112."""
    from PIL import Image

    if not CELEBA.is_dir():
        pytest.skip(f"CelebA-299 not found at {CELEBA} (set CQA_DATA)")
    images, labels = [], []
    ids = [d for d in sorted(CELEBA.iterdir()) if d.is_dir() and len(list(d.glob("*.jpg"))) >= per_id][:n_ids]
    for label, d in enumerate(ids):
        for f in sorted(d.glob("*.jpg"))[:per_id]:
            with Image.open(f) as im:
                w, h = im.size
                box = ((w - 150) // 2, (h - 150) // 2, (w + 150) // 2, (h + 150) // 2)
                arr = np.asarray(im.convert("RGB").crop(box).resize((112, 112), Image.BILINEAR))
            images.append(torch.from_numpy(arr.copy()).permute(2, 0, 1))  # (3, 112, 112)
            labels.append(label)
    return TensorFaces(torch.stack(images), labels)


def tiny_config(tmp_path: Path, **kw) -> TrainConfig:
    base = dict(model=ModelConfig(stem="light"), data=DataConfig(root=str(tmp_path), num_workers=0),
                batch_size=32, warmup_epochs=0.0, lr=0.03, out_dir=str(tmp_path / "run"), eval_pairs=None,
                progress=False, tensorboard=False, hflip=False, log_every=1)
    base.update(kw)
    return TrainConfig(**base)


def batch_loss(trainer: Trainer, batch: tuple[torch.Tensor, torch.Tensor]) -> float:
    with torch.no_grad():
        terms, _, _ = trainer.net(trainer.preprocess(batch[0], 0)[0], batch[1], batch[1])
    return float(terms.total)


@pytest.mark.data
def test_one_step_on_real_faces_lowers_loss(tmp_path: Path) -> None:
    data = celeba_batch()
    trainer = Trainer(tiny_config(tmp_path), dataset=data)
    batch = (data.images, torch.tensor(data.labels))
    before = batch_loss(trainer, batch)
    metrics = trainer.train_step([batch])
    after = batch_loss(trainer, batch)
    assert metrics is not None and np.isfinite(metrics["loss"])
    assert after < before, (before, after)


def test_fit_writes_metrics_checkpoints_and_model(face_folder: Path, tmp_path: Path) -> None:
    seen: list[int] = []

    class Spy:
        def __getattr__(self, name):  # any hook is fine
            return lambda trainer, *a: seen.append(trainer.step) if name == "on_step" else None

    config = tiny_config(face_folder, batch_size=8, max_steps=4, save_every=2, keep_last=1)
    from cqa_core.training.data import build_dataset

    last = Trainer(config, dataset=build_dataset(config), callbacks=[Spy()]).fit()
    run = Path(config.out_dir)
    assert seen == [1, 2, 3, 4] and last["step"] == 4
    assert [p.name for p in (run / "checkpoints").iterdir()] == ["step_00000004"]
    assert (run / "metrics.jsonl").read_text().count('"kind": "step"') == 4
    from cqa_core.checkpoint import load_model

    assert load_model(run / "model.safetensors").config.stem == "light"


def test_request_stop_ends_run_with_checkpoint(face_folder: Path, tmp_path: Path) -> None:
    from cqa_core.training.callbacks import Callback
    from cqa_core.training.data import build_dataset

    class StopAt2(Callback):
        def on_step(self, trainer, metrics):
            if trainer.step == 2:
                trainer.request_stop()

    config = tiny_config(face_folder, batch_size=8, max_steps=10)
    trainer = Trainer(config, dataset=build_dataset(config), callbacks=[StopAt2()])
    trainer.fit()
    assert trainer.step == 2
    assert (Path(config.out_dir) / "checkpoints" / "step_00000002" / "state.json").is_file()


def test_trains_from_recordio(face_folder: Path, tmp_path: Path) -> None:
    recordio = pytest.importorskip("cqa_core.data.recordio")
    prefix = tmp_path / "rec" / "train"
    prefix.parent.mkdir()
    assert recordio.write_face_folder(face_folder, prefix) == 24
    config = tiny_config(tmp_path, data=DataConfig(root=str(prefix), format="recordio", num_workers=0),
                         batch_size=8, max_steps=2)
    from cqa_core.training.data import build_dataset

    trainer = Trainer(config)
    assert trainer.num_classes == 4 and len(build_dataset(config)) == 24
    assert trainer.fit()["step"] == 2
