"""The paper's main setting: CQA-Face on iResNet-100, trained on VGGFace2 (8,631 identities).

Implementation Details: CosFace, batch 256, lr 0.03 with 2 warm-up epochs, divided by 10 at
epochs 7 and 10, set to 1e-4 for epoch 12, stop after epoch 12. b = 4, sigma 0.01, t 0.2,
lambda 0.5. Data: insightface's aligned 112 x 112 RecordIO (``faces_vgg_112x112/train.rec``
+ ``train.idx``); point data_root at the prefix, or at an aligned folder with data_format=folder.

    torchrun --nproc_per_node 8 -m cqa_core.cli train --config configs/vggface2_r100.py \
        --set data_root=/data/faces_vgg_112x112/train
"""

from cqa_core.config import DataConfig, LossConfig, ModelConfig, TrainConfig

config = TrainConfig(
    model=ModelConfig(stem="r100", branches=4, qan=True),
    loss=LossConfig(head="cosface", scale=64.0, margin=0.35, diversity="cal", lam=0.5, sigma=0.01, t=0.2),
    data=DataConfig(root="data/faces_vgg_112x112/train", format="recordio", num_workers=8),
    batch_size=256,
    lr=0.03,
    warmup_epochs=2.0,
    lr_milestones=(7, 10),
    lr_decay=0.1,
    final_lr=1e-4,
    final_lr_epoch=12,
    epochs=12,
    out_dir="runs/vggface2_r100",
    save_every=2000,
    eval_every=2000,
    log_every=50,
)
