"""The embedded CPU model: light stem, b = 4, CAL + QAN, CosFace, on CelebA-299.

Raw CelebA-299 crops (250 x 250) are aligned to 112 x 112 on first use (``data.align``, through
``cqa_core.data.datasets.ensure_aligned``; cached under $CQA_CACHE or ~/.cache/cqa-face).
6,274 faces / batch 64 = 98 steps per epoch; the 20 epochs took 48 minutes on 2 shared CPU cores
(docs/model_card.md). The schedule is the paper's shape scaled down: 1 warm-up epoch, /10 at
epochs 12 and 17.

    cqa train --config configs/default_cpu.py --set max_steps=50 --set out_dir=runs/try
"""

import os
from pathlib import Path

from cqa_core.config import DataConfig, LossConfig, ModelConfig, TrainConfig

DATA = Path(os.environ.get("CQA_DATA", Path(__file__).resolve().parents[1].parent / "shared" / "data"))

config = TrainConfig(
    model=ModelConfig(stem="light", branches=4, qan=True),
    # CosFace s = 32, m = 0.25 and lr 0.01 instead of the r100 presets' s = 64, m = 0.35, lr 0.03:
    # with 299 classes and batch 64 those sat above the uniform-prediction loss (log K + s m) for
    # the first 190 steps (runs/ab_s64, runs/default_v1 in the model card), this setting learns
    # from epoch 2. This is the exact config of cqa_core/weights/default.safetensors.
    loss=LossConfig(head="cosface", diversity="cal", scale=32.0, margin=0.25),
    data=DataConfig(root=str(DATA / "celeba299"), format="folder", num_workers=2, align=True),
    batch_size=64,
    lr=0.01,
    epochs=20,
    warmup_epochs=1.0,
    lr_milestones=(12, 17),
    final_lr=None,
    final_lr_epoch=None,
    out_dir="runs/default_cpu",
    eval_pairs="auto",
    log_every=5,
)
