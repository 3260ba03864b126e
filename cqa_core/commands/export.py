"""``cqa export --onnx MODEL.onnx [--model PATH]``: CQA-Face as an ONNX graph.

Outputs embedding, attention_maps and quality with a dynamic batch axis (see
:mod:`cqa_core.export`). With onnxruntime installed the file is checked against PyTorch on a
random batch and the largest difference is printed.
"""

from __future__ import annotations

import argparse
import importlib.util
from pathlib import Path

from cqa_core.commands.common import add_model_argument


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help="export CQA-Face to ONNX (embedding, attention maps, quality)")
    p.add_argument("--onnx", required=True, metavar="OUT", help="ONNX file to write")
    add_model_argument(p, "a CQA-Face .safetensors checkpoint or run folder (default: $CQA_CHECKPOINT, else the bundled model)")
    p.add_argument("--opset", type=int, default=17, help="ONNX opset version (default 17)")
    p.add_argument("--no-verify", dest="verify", action="store_false",
                   help="skip the onnx checker and the onnxruntime parity run")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    # imported when the command runs, so `cqa --help` and the other commands never load torch
    import torch

    from cqa_core.checkpoint import resolve_model
    from cqa_core.export import OUTPUTS, export_onnx, onnx_session, parity

    model, label, _ = resolve_model(args.model or args.settings.checkpoint, "cpu")
    out = export_onnx(model, args.onnx, opset=args.opset, check=args.verify)
    b, emb = model.config.branches, model.config.embedding_size
    print(f"{label} -> {out} ({Path(out).stat().st_size / 1e6:.1f} MB, opset {args.opset})")
    print(f"input images (batch, 3, 112, 112); outputs {', '.join(OUTPUTS)} = "
          f"(batch, {emb}), (batch, {b}, 7, 7), (batch, {b}); batch is dynamic")
    if not args.verify:
        return 0
    if importlib.util.find_spec("onnxruntime") is None:
        print("onnxruntime not installed: parity not checked (pip install 'cqa-face[export]')")
        return 0
    x = torch.randn(3, 3, 112, 112, generator=torch.Generator().manual_seed(0))  # (3, 3, 112, 112)
    diffs = parity(model, onnx_session(out), x)
    print("onnxruntime vs PyTorch, max abs difference on 3 random inputs: "
          + ", ".join(f"{k} {v:.2e}" for k, v in diffs.items()))
    return 0
