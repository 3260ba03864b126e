"""``cqa info`` prints counted parameters and FLOPs."""

import json

from cqa_core.cli import main


def test_info_light_json(capsys):
    assert main(["info", "--stem", "light", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    stem, bare, cqa = rows["models"]
    assert stem["params"] < 3e6 and stem["flops"] < 0.5e9  # the light stem's budget
    assert cqa["params"] < 3e6
    # overhead is computed from the counted rows, not typed in
    expected = 100 * (cqa["flops"] - bare["flops"]) / bare["flops"]
    assert abs(rows["overhead_pct"]["flops"] - expected) < 1e-9


def test_info_table(capsys):
    assert main(["info", "--stem", "light", "--branches", "2"]) == 0
    out = capsys.readouterr().out
    assert "CQA-Face light b=2" in out and "overhead" in out
