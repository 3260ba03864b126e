"""Parameter and FLOP counts, measured with ``torch.utils.flop_counter`` (not estimated)."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from cqa_core.config import ModelConfig
from cqa_core.model import IResNet, create_model


def count_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def count_flops(module: nn.Module, input_size: int = 112) -> int:
    """FLOPs of one eval-mode forward on a 1 x 3 x size x size input (multiply-add = 2)."""
    x = torch.zeros(1, 3, input_size, input_size)
    was_training = module.training
    module.eval()
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        module(x)
    module.train(was_training)
    return int(counter.get_total_flops())


def compare(config: ModelConfig) -> dict[str, Any]:
    """Bare stem, bare stem + insightface FC-512 head, and CQA-Face on the stem."""
    bare = IResNet(config.stem, config.embedding_size)
    cqa = create_model(config)
    models = [
        (f"{config.stem} stem (feature map X)", bare.stem),
        (f"{config.stem} + flatten/FC-512 (insightface)", bare),
        (f"CQA-Face {config.stem} b={config.branches}{'' if config.qan else ' no QAN'}", cqa),
    ]
    rows = [{"name": n, "params": count_params(m), "flops": count_flops(m)} for n, m in models]
    base, ours = rows[1], rows[2]
    overhead = {k: 100.0 * (ours[k] - base[k]) / base[k] for k in ("params", "flops")}
    over_stem = {k: 100.0 * (ours[k] - rows[0][k]) / rows[0][k] for k in ("params", "flops")}
    return {"models": rows, "overhead_pct": overhead, "overhead_vs_stem_pct": over_stem}
