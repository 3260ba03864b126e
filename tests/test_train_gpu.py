"""Trainer on CUDA: bf16 autocast, channels_last, fused SGD, torch.compile (skipped without a GPU)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from cqa_core.config import DataConfig, ModelConfig, TrainConfig
from cqa_core.training.trainer import Trainer

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]


class RandomFaces(torch.utils.data.Dataset):
    """Fixed random uint8 faces, 8 classes (no image libraries needed)."""

    num_classes = 8

    def __init__(self, n: int = 256) -> None:
        g = torch.Generator().manual_seed(0)
        self.images = torch.randint(0, 256, (n, 3, 112, 112), dtype=torch.uint8, generator=g)

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return self.images[i], i % 8


def cuda_config(tmp_path: Path, **kw) -> TrainConfig:
    base = dict(model=ModelConfig(stem="r18"), data=DataConfig(num_workers=2), batch_size=64, max_steps=6,
                warmup_epochs=0.0, lr=0.01, out_dir=str(tmp_path / "run"), eval_pairs=None, progress=False,
                tensorboard=False, log_every=1, device="cuda")
    base.update(kw)
    return TrainConfig(**base)


def test_bf16_channels_last_training_on_cuda(tmp_path: Path) -> None:
    trainer = Trainer(cuda_config(tmp_path), dataset=RandomFaces())
    assert trainer.amp and trainer.device.type == "cuda"
    assert trainer.optimizer.defaults.get("fused") is True
    last = trainer.fit()
    assert torch.isfinite(torch.tensor(last["loss"]))
    assert all(p.dtype == torch.float32 for p in trainer.net.parameters())  # autocast, not .half()
    from cqa_core.checkpoint import load_model

    assert load_model(Path(trainer.out_dir) / "model.safetensors").config.stem == "r18"


def test_model_forward_stays_fp32_outside_the_trainer() -> None:
    from cqa_core.model import create_model

    model = create_model(ModelConfig(stem="light")).cuda().eval()
    out = model(torch.zeros(2, 3, 112, 112, device="cuda"))
    assert out.embedding.dtype == torch.float32  # no autocast inside forward


def test_compiled_training_step(tmp_path: Path) -> None:
    trainer = Trainer(cuda_config(tmp_path, model=ModelConfig(stem="light"), compile=True, max_steps=3),
                      dataset=RandomFaces())
    last = trainer.fit()
    assert last["step"] == 3 and torch.isfinite(torch.tensor(last["loss"]))


def test_resume_on_cuda_restores_cuda_rng(tmp_path: Path) -> None:
    Trainer(cuda_config(tmp_path, model=ModelConfig(stem="light"), max_steps=2), dataset=RandomFaces()).fit()
    t = Trainer(cuda_config(tmp_path, model=ModelConfig(stem="light"), max_steps=4), dataset=RandomFaces(), resume="")
    assert t.step == 2
    assert t.fit()["step"] == 4


def test_throughput_benchmark_reports_mfu() -> None:
    import contextlib
    import importlib.util
    import io
    import json

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "train_throughput.py"
    spec = importlib.util.spec_from_file_location("train_throughput", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        bench.main(["--stem", "light", "--batch-size", "32", "--steps", "3", "--warmup", "1", "--json"])
    result = json.loads(buf.getvalue())
    assert result["cqa"]["images_per_s"] > 0 and result["precision"] == "bf16"
    if bench.peak_flops(torch.device("cuda")) is not None:
        assert 0 < result["cqa"]["mfu"] < 1
