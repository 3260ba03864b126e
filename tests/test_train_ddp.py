"""Two DDP processes (torchrun, gloo, CPU) train the same weights as one process on the same global batch.

BatchNorm normalises with per-process batch statistics, so "one process, whole global batch in
one forward" is NOT the same computation as two processes with half each (CPU/gloo has no
SyncBatchNorm). The exact single-process counterpart is gradient accumulation: with
``grad_accum=2`` one process runs the two half-batches as micro-batches, and GlobalBatchSampler
gives micro-batch slot ``rank * grad_accum + a`` the same images (flips too), so both runs see
identical BN statistics and average identical gradients. Parameters then agree up to float
summation order (all-reduce vs accumulation). BN running buffers are not compared: under DDP they
come from rank 0's half only (broadcast_buffers), with accumulation from both halves.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]


def sets(face_folder: Path, out: Path, accum: int) -> list[str]:
    items = [f"data_root={face_folder}", f"out_dir={out}", "model.stem=light", "data.align=False",
             "batch_size=8", f"grad_accum={accum}", "max_steps=3", "num_workers=0", "eval_pairs=None",
             "progress=False", "tensorboard=False", "seed=11", "warmup_epochs=0.0", "lr=0.01",
             "distill.teacher=None"]  # the default preset's augmentation stays on: keyed, so ranks agree
    return [a for s in items for a in ("--set", s)]


@pytest.mark.slow
def test_two_process_gloo_matches_one_process(face_folder: Path, tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    one, two = tmp_path / "one", tmp_path / "two"
    subprocess.run([sys.executable, "-m", "cqa_core.commands.train", *sets(face_folder, one, 2)],
                   env=env, cwd=REPO, check=True, capture_output=True, timeout=300)
    ddp = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                          "-m", "cqa_core.commands.train", *sets(face_folder, two, 1)],
                         env=env, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert ddp.returncode == 0, ddp.stderr[-3000:]
    from safetensors.torch import load_file

    a, b = load_file(str(one / "model.safetensors")), load_file(str(two / "model.safetensors"))
    params = [k for k in a if not k.endswith(("running_mean", "running_var", "num_batches_tracked"))]
    for k in params:
        torch.testing.assert_close(b[k], a[k], rtol=1e-4, atol=1e-5, msg=lambda m, k=k: f"{k}: {m}")
    ha = load_file(str(one / "checkpoints" / "step_00000003" / "head.safetensors"))
    hb = load_file(str(two / "checkpoints" / "step_00000003" / "head.safetensors"))
    torch.testing.assert_close(hb["weight"], ha["weight"], rtol=1e-4, atol=1e-5)
    # the runs really trained: the head moved well away from its seeded initialisation
    from cqa_core.config import ModelConfig
    from cqa_core.model import create_head, create_model
    from cqa_core.training.net import seed_everything

    seed_everything(11)
    create_model(ModelConfig(stem="light"))
    init = create_head("cosface", 512, 4, 64.0, 0.35).weight.detach()
    assert (ha["weight"] - init).abs().max() > 1e-3
