"""``cqa import-backbone insightface BACKBONE.pth --stem r50 --out MODEL.safetensors``.

Loads an insightface ``arcface_torch`` iResNet state dict with ``torch.load(weights_only=True)``,
puts its conv body into the CQA-Face stem (``layerN.`` -> ``stages.{N-1}.``, see
:mod:`cqa_core.model.transfer`), reports the mapping and any shape mismatch, and writes a
CQA-Face checkpoint (stem imported, branches / QAN / FC seeded fresh) to fine-tune from.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "import-backbone", help="start a CQA-Face checkpoint from an insightface iResNet backbone.pth",
        description="Maps insightface arcface_torch iResNet weights (conv1/bn1/prelu/layer1..4/bn2) onto the "
        "CQA-Face stem and writes a .safetensors checkpoint; insightface's fc/features head is not used.",
    )
    p.add_argument("source", choices=("insightface",), help="where the weights come from")
    p.add_argument("path", help="backbone.pth (a state dict; loaded with torch.load(weights_only=True))")
    p.add_argument("--stem", required=True, choices=("r18", "r34", "r50", "r100"), help="iResNet depth of PATH")
    p.add_argument("--out", required=True, help="CQA-Face checkpoint to write (.safetensors)")
    p.add_argument("--branches", type=int, default=4, help="local branches b of the new head (default 4)")
    p.add_argument("--no-qan", action="store_true", help="build the head without the QAN")
    p.add_argument("--seed", type=int, default=0, help="seed of the new head's initialisation (default 0)")
    p.add_argument("--json", action="store_true", help="print the full key mapping as JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    # imported when the command runs, so `cqa --help` and the other commands never load torch
    from cqa_core.checkpoint import save_model
    from cqa_core.config import ModelConfig
    from cqa_core.model.transfer import import_insightface, read_insightface_state

    config = ModelConfig(stem=args.stem, branches=args.branches, qan=not args.no_qan)
    source = read_insightface_state(args.path)
    model, report = import_insightface(source, config, seed=args.seed)
    save_model(args.out, model, extra={"imported_from": f"insightface:{Path(args.path).name}",
                                       "imported_tensors": len(report.mapped)})
    if args.json:
        print(json.dumps({"out": str(args.out), "mapped": report.mapped, "unused": report.unused,
                          "missing": report.missing, "mismatched": report.mismatched}, indent=1))
        return 0
    renamed = sum(a != b for a, b in report.mapped)
    print(f"mapped {len(report.mapped)} tensors into the {args.stem} stem "
          f"({renamed} renamed layerN.* -> stages.N-1.*, {len(report.mapped) - renamed} as is); "
          "shape mismatches: 0")
    if report.unused:
        shapes = ", ".join(f"{k} {tuple(source[k].shape)}" for k in report.unused)
        print(f"not used (insightface's embedding head; CQA-Face trains its own): {shapes}")
    print(f"wrote {args.out}: CQA-Face {args.stem} b={args.branches}{'' if config.qan else ' no QAN'}, "
          f"new head seeded {args.seed}. Train its heads: cqa train --set model.stem={args.stem} "
          f"--set model.branches={args.branches}{'' if config.qan else ' --set model.qan=False'} "
          f"--set init_from={args.out} --set freeze_stem=true (notebooks/08_cqa_on_your_backbone)")
    return 0
