"""Resume keeps optimiser buffers in their parameter's memory format (issue 14, item 1).

The CUDA fused SGD kernel requires params, grads and momentum buffers to share strides; buffers
are saved contiguous, so a channels_last model must get them back as channels_last on load.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from cqa_core.config import ModelConfig
from cqa_core.model import create_head, create_model
from cqa_core.training import ckpt_state


def _setup() -> tuple[torch.nn.Module, torch.nn.Module, torch.optim.Optimizer]:
    model = create_model(ModelConfig(stem="light")).to(memory_format=torch.channels_last)
    head = create_head("cosface", model.config.embedding_size, 4, 64.0, 0.35)
    params = list(model.parameters()) + list(head.parameters())
    return model, head, torch.optim.SGD(params, lr=0.1, momentum=0.9)


def _step(model: torch.nn.Module, head: torch.nn.Module, opt: torch.optim.Optimizer) -> None:
    x = torch.randn(2, 3, 112, 112).contiguous(memory_format=torch.channels_last)  # (2, 3, 112, 112)
    logits = head(model(x).embedding, torch.tensor([0, 3]))  # (2, 4)
    torch.nn.functional.cross_entropy(logits, torch.tensor([0, 3])).backward()
    opt.step()
    opt.zero_grad(set_to_none=True)


def _mismatched(opt: torch.optim.Optimizer) -> list[tuple[tuple[int, ...], tuple[int, ...]]]:
    """(param strides, buffer strides) of every momentum buffer whose strides differ."""
    out = []
    for group in opt.param_groups:
        for p in group["params"]:
            buf = opt.state[p]["momentum_buffer"]
            if buf.stride() != p.stride():
                out.append((p.stride(), buf.stride()))
    return out


def test_resumed_momentum_buffers_have_param_strides(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model, head, opt = _setup()
    _step(model, head, opt)
    nhwc = [p for p in model.parameters() if p.dim() == 4 and p.shape[2] > 1 and not p.is_contiguous()]
    assert nhwc, "the model has channels_last 3x3 convs (otherwise this test checks nothing)"
    assert not _mismatched(opt)  # fresh buffers follow their grads' layout
    saved = {id(p): opt.state[p]["momentum_buffer"].clone() for g in opt.param_groups for p in g["params"]}
    path = ckpt_state.save_training_state(tmp_path, 1, model, head, opt, {"epoch": 0})

    model2, head2, opt2 = _setup()
    ckpt_state.load_training_state(path, model2, head2, opt2)
    assert _mismatched(opt2) == []
    pairs = zip([p for g in opt.param_groups for p in g["params"]],
                [p for g in opt2.param_groups for p in g["params"]], strict=True)
    for p, q in pairs:  # same values too, and the conv buffers really are NHWC
        buf = opt2.state[q]["momentum_buffer"]
        torch.testing.assert_close(buf, saved[id(p)], rtol=0, atol=0)
        if q.dim() == 4 and q.shape[2] > 1:
            assert buf.is_contiguous(memory_format=torch.channels_last)


def test_match_param_layout_moves_only_mismatched() -> None:
    p = torch.nn.Parameter(torch.zeros(2, 3, 3, 3).contiguous(memory_format=torch.channels_last))
    q = torch.nn.Parameter(torch.zeros(5))
    opt = torch.optim.SGD([p, q], lr=0.1, momentum=0.9)
    opt.state[p]["momentum_buffer"] = torch.arange(54.0).reshape(2, 3, 3, 3)  # NCHW, strides (27, 9, 3, 1)
    opt.state[q]["momentum_buffer"] = torch.ones(5)
    assert ckpt_state.match_param_layout(opt) == 1
    buf = opt.state[p]["momentum_buffer"]
    assert buf.stride() == (27, 1, 9, 3)  # NHWC strides of a (2, 3, 3, 3) tensor
    assert buf[1, 2, 0, 1].item() == 27 + 2 * 9 + 1  # values unchanged: 46


def test_resuming_sharded_partial_fc_centres_is_refused(tmp_path: Path) -> None:
    from cqa_core.training.partial_fc import PartialFC

    model, head, opt = _setup()
    path = ckpt_state.save_training_state(tmp_path, 1, model, head, opt, {"epoch": 0})
    shard = create_head("cosface", model.config.embedding_size, 2, 64.0, 0.35)  # rank 0 of 2 over 4 classes
    PartialFC(shard, 1.0, num_classes=4, rank=0, world_size=2)  # marks shard.weight rank-local
    with pytest.raises(NotImplementedError, match="sharded Partial FC"):
        ckpt_state.load_training_state(path, model, shard, opt)
