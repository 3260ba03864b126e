"""``cqa explain IMAGE [OTHER] --out DIR [--checkpoint PATH]``: overlay PNGs and a JSON of the numbers.

Without ``--checkpoint`` the model is ``$CQA_CHECKPOINT`` or the bundled default
(:func:`cqa_core.checkpoint.resolve_model`), as for ``cqa eval`` and ``cqa workbench``.

Writes overlay PNGs and ``analysis.json`` into DIR (``cqa_core.explain.report`` lists them).
"""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("explain", help="explain one face or why two faces match (PNGs + JSON)")
    p.add_argument("image", help="photo or aligned 112x112 face")
    p.add_argument("other", nargs="?", default=None, help="optional second face: explain the pair")
    p.add_argument("--checkpoint", default=None,
                   help="model .safetensors or a directory holding one (default: $CQA_CHECKPOINT, else the "
                   "bundled default model)")
    p.add_argument("--out", required=True, help="output directory (created)")
    p.add_argument("--methods", default="gradcam",
                   help="comma-separated pair maps: gradcam, ig, occlusion or a pytorch-grad-cam class (default gradcam)")
    p.add_argument("--alpha", type=float, default=0.5, help="heatmap opacity in the overlays (default 0.5)")
    p.add_argument("--device", default="cpu", help="torch device (default cpu)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    # imported when the command runs, so `cqa --help` and the other commands never load torch
    from cqa_core.checkpoint import resolve_model
    from cqa_core.explain.analysis import analyse
    from cqa_core.explain.report import write_report

    model, label, _ = resolve_model(args.settings.checkpoint, args.device)
    methods = tuple(m.strip() for m in args.methods.split(",") if m.strip())
    fa = analyse(model, args.image, args.other, methods=methods)
    files = write_report(fa, args.out, label, args.image, args.other, args.alpha)
    line = f"{label}: wrote {len(files) - 1} PNGs and analysis.json to {args.out}"
    if fa.similarity is not None:
        line += f"; similarity {fa.similarity:.4f}"
    print(line)
    return 0
