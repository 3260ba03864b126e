"""The paper's learning-rate schedule as a pure function of the optimiser step.

lr(step) with e = step / steps_per_epoch (fractional epochs done) and n = floor(e) + 1 (the
1-based epoch the step belongs to):

    e < warmup_epochs:          lr * (step + 1) / warmup_steps            (linear warm-up)
    n >= final_lr_epoch:        final_lr                                   (paper: 1e-4)
    otherwise:                  lr * decay ** #{milestones m : n >= m}     (/10 at 7 and 10)

Being a function of the step alone, the "scheduler state" is the step counter in the
checkpoint; resuming cannot drift.
"""

from __future__ import annotations

import math

from cqa_core.config import TrainConfig


def lr_at(step: int, steps_per_epoch: int, config: TrainConfig) -> float:
    """Learning rate for optimiser step ``step`` (0-based)."""
    warmup_steps = int(math.ceil(config.warmup_epochs * steps_per_epoch))
    if step < warmup_steps:
        return config.lr * (step + 1) / warmup_steps
    epoch = step // max(steps_per_epoch, 1) + 1  # 1-based, as the paper counts
    if config.final_lr is not None and config.final_lr_epoch is not None and epoch >= config.final_lr_epoch:
        return config.final_lr
    passed = sum(1 for m in config.lr_milestones if epoch >= m)
    return config.lr * config.lr_decay**passed


def epoch_lrs(config: TrainConfig) -> list[float]:
    """The lr in force at the start of each (post-warm-up) epoch, 1-based order; for docs and tests."""
    spe = 1000
    return [lr_at(max(e * spe, int(config.warmup_epochs * spe)), spe, config) for e in range(config.epochs)]
