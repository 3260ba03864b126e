"""CQA-Face on iResNet-100 trained on MS1MV2 (5.8M faces, 85K identities).

Implementation Details: CosFace, batch 256, lr 0.03 with 2 warm-up epochs, divided by 10 at
epochs 13 and 19, set to 1e-4 at epoch 23, stop after epoch 24. Data: insightface's
``faces_emore/train.rec`` (+ ``.idx``). 85K classes is under the Partial FC threshold (100K), so
the full CosFace head is used; ``--set partial_fc=on`` samples 30% of the centres per step.

    torchrun --nproc_per_node 8 -m cqa_core.cli train --config configs/ms1mv2_r100.py \
        --set data_root=/data/faces_emore/train
"""

from cqa_core.config import DataConfig, LossConfig, ModelConfig, TrainConfig

config = TrainConfig(
    model=ModelConfig(stem="r100", branches=4, qan=True),
    loss=LossConfig(head="cosface", scale=64.0, margin=0.35, diversity="cal", lam=0.5, sigma=0.01, t=0.2),
    data=DataConfig(root="data/faces_emore/train", format="recordio", num_workers=8),
    batch_size=256,
    lr=0.03,
    warmup_epochs=2.0,
    lr_milestones=(13, 19),
    lr_decay=0.1,
    final_lr=1e-4,
    final_lr_epoch=23,
    epochs=24,
    out_dir="runs/ms1mv2_r100",
    save_every=5000,
    eval_every=5000,
    log_every=50,
)
