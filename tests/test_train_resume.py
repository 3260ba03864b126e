"""Kill -9 a training run at a random step, ``--resume`` it: the weights equal an uninterrupted run's, bitwise."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from cqa_core.config import DataConfig, ModelConfig, TrainConfig
from cqa_core.training.data import build_dataset
from cqa_core.training.trainer import Trainer

REPO = Path(__file__).resolve().parents[1]


def cli(face_folder: Path, out: Path, *extra: str) -> list[str]:
    sets = [f"data_root={face_folder}", f"out_dir={out}", "model.stem=light", "data.align=False", "batch_size=8",
            "max_steps=10", "epochs=4", "num_workers=0", "eval_pairs=None", "save_every=1", "keep_last=2",
            "warmup_epochs=1.0", "progress=False", "tensorboard=False", "log_every=1", "seed=3"]
    args = [sys.executable, "-m", "cqa_core.commands.train"]
    for s in sets:
        args += ["--set", s]
    return args + list(extra)


def env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}


def tensors(path: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(path))


def assert_bitwise_equal(a: Path, b: Path) -> None:
    ta, tb = tensors(a), tensors(b)
    assert ta.keys() == tb.keys()
    different = [k for k in ta if not torch.equal(ta[k], tb[k])]
    assert not different, f"{len(different)} tensors differ, e.g. {different[:3]}"


@pytest.mark.slow
def test_sigkill_and_resume_is_bitwise_identical(face_folder: Path, tmp_path: Path) -> None:
    ref, run = tmp_path / "ref", tmp_path / "run"
    subprocess.run(cli(face_folder, ref), env=env(), cwd=REPO, check=True, capture_output=True, timeout=300)

    kill_after = random.Random().randint(2, 8)  # a checkpoint exists at every step >= 1
    proc = subprocess.Popen(cli(face_folder, run), env=env(), cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ckpts = run / "checkpoints"
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None:
        if (ckpts / f"step_{kill_after:08d}").is_dir():
            break
        time.sleep(0.02)
    assert proc.poll() is None, "run finished before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (run / "model.safetensors").exists()

    done = subprocess.run(cli(face_folder, run, "--resume"), env=env(), cwd=REPO, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "resumed from" in done.stderr
    final = "checkpoints/step_00000010"
    pairs = [("model.safetensors", "model.safetensors")] + [
        (f"{final}/{n}", f"{final}/{n}") for n in ("head.safetensors", "optim.safetensors")]
    for a, b in pairs:
        try:
            assert_bitwise_equal(ref / a, run / b)
        except AssertionError as exc:
            raise AssertionError(f"{a} after kill -9 at step {kill_after} + resume: {exc}") from None


def test_in_process_resume_matches(face_folder: Path, tmp_path: Path) -> None:
    """Same property in one process: stop at step 2 (max_steps), resume to 4 (grad_accum 2, flips on)."""

    def config(out: Path, steps: int) -> TrainConfig:
        return TrainConfig(model=ModelConfig(stem="light"), data=DataConfig(root=str(face_folder), num_workers=0),
                           batch_size=8, grad_accum=2, max_steps=steps, epochs=3, warmup_epochs=1.0,
                           out_dir=str(out), eval_pairs=None, progress=False, tensorboard=False, seed=5)

    data = build_dataset(config(tmp_path, 1))
    Trainer(config(tmp_path / "ref", 4), dataset=data).fit()
    Trainer(config(tmp_path / "run", 2), dataset=data).fit()
    resumed = Trainer(config(tmp_path / "run", 4), dataset=data, resume="")
    assert resumed.step == 2
    resumed.fit()
    assert_bitwise_equal(tmp_path / "ref" / "model.safetensors", tmp_path / "run" / "model.safetensors")
