"""``cqa info`` prints counted parameters and FLOPs; the head's share is worked out by hand here."""

import json

import pytest

from cqa_core.cli import main
from cqa_core.config import ModelConfig
from cqa_core.model import create_stem


def head_by_hand(c: int, b: int, qan: bool, cfg: ModelConfig) -> tuple[int, int]:
    """(params, FLOPs) of CQA-Face's head on a C x 7 x 7 feature map, counted layer by layer.

    FLOPs: a multiply-add is 2; convolutions, linears and batched matmuls count, BN / ReLU /
    sigmoid do not (torch.utils.flop_counter's rules).
    """
    s, e = 49, 512  # 7 x 7 positions, embedding size
    h = c // cfg.lanet_reduction  # LANet hidden channels
    params = b * (c * h + h + h + 1)  # b LANets: conv1 C->h, conv2 h->1, with biases
    flops = b * 2 * s * (c * h + h) + 2 * b * c * s  # LANet convs at 49 positions + P_i = GAP(X * M_i)
    if qan:
        d, k = c // cfg.qan_reduction, cfg.qan_hidden
        params += 2 * (c * d + 2 * d)  # phi, varphi: conv (no bias) + BN
        params += (c * k + 2 * k) + (2 * b * k + 2 * k)  # mu, nu: conv (no bias) + BN
        params += (2 * k * k + k) + (k + 1)  # theta: 2k -> k -> 1
        flops += 2 * b * (2 * c * d + c * k + 2 * b * k + 2 * k * k + k) + 2 * b * b * d  # convs over b nodes + A
    params += b * c * e + e + 2 * e  # FC-512 + BN(512)
    flops += 2 * b * c * e
    return params, flops


@pytest.mark.parametrize("branches, qan", [(4, True), (2, False)])
def test_info_counts_match_a_hand_count(capsys, branches, qan):
    argv = ["info", "--stem", "light", "--branches", str(branches), "--json"] + ([] if qan else ["--no-qan"])
    assert main(argv) == 0
    rows = json.loads(capsys.readouterr().out)
    stem, bare, cqa = rows["models"]
    c = create_stem("light").out_channels  # 192
    fc_params, fc_flops = c * 49 * 512 + 512 + 2 * 512, 2 * c * 49 * 512  # insightface flatten -> FC-512 -> BN
    head_params, head_flops = head_by_hand(c, branches, qan, ModelConfig())
    assert bare["params"] - stem["params"] == fc_params and bare["flops"] - stem["flops"] == fc_flops
    assert cqa["params"] - stem["params"] == head_params and cqa["flops"] - stem["flops"] == head_flops
    # overhead vs the insightface model, from the hand counts (light b=4 QAN: (472,517 - 4,818,432) / 6,335,152)
    for key, head, fc in (("params", head_params, fc_params), ("flops", head_flops, fc_flops)):
        assert rows["overhead_pct"][key] == pytest.approx(100 * (head - fc) / (stem[key] + fc), rel=1e-9)
    assert stem["params"] < 3e6 and stem["flops"] < 0.5e9  # the light stem's budget


def test_info_table(capsys):
    assert main(["info", "--stem", "light", "--branches", "2"]) == 0
    out = capsys.readouterr().out
    assert "CQA-Face light b=2" in out and "overhead" in out
