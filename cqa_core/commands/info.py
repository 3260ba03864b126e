"""``cqa info --stem NAME``: parameters and FLOPs of a bare stem and of CQA-Face on it."""

from __future__ import annotations

import argparse
import json


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("info", help="parameters and GFLOPs of a stem and of CQA-Face on it")
    p.add_argument("--stem", default="r100", help="r18 | r34 | r50 | r100 | light (default r100)")
    p.add_argument("--branches", type=int, default=4, help="number of local branches b (default 4)")
    p.add_argument("--no-qan", action="store_true", help="count CQA-Face without the QAN")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    # imported when the command runs, so `cqa --help` and the other commands never load torch
    from cqa_core.config import ModelConfig
    from cqa_core.profile import compare

    rows = compare(ModelConfig(stem=args.stem, branches=args.branches, qan=not args.no_qan))
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    width = max(34, *(len(r["name"]) + 2 for r in rows["models"]))
    print(f"{'model':<{width}}{'params (M)':>12}{'GFLOPs':>10}")
    for r in rows["models"]:
        print(f"{r['name']:<{width}}{r['params'] / 1e6:>12.3f}{r['flops'] / 1e9:>10.3f}")
    o = rows["overhead_pct"]
    print(f"CQA overhead vs bare stem + FC-512: params {o['params']:+.1f}%, FLOPs {o['flops']:+.1f}%")
    s = rows["overhead_vs_stem_pct"]
    print(f"CQA head (branches, QAN, FC) on the stem alone: params {s['params']:+.1f}%, FLOPs {s['flops']:+.2f}%")
    print("FLOPs counted by torch.utils.flop_counter at 1 x 3 x 112 x 112 (a multiply-add = 2 FLOPs).")
    return 0
