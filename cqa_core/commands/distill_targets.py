"""``cqa distill-targets DATASET --teacher T``: teacher embeddings for distillation, once per image."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "distill-targets",
        help="compute a teacher's embedding of every training face once (for distill.teacher)",
        description="Writes DATASET/distill/<teacher>.safetensors beside the aligned crops (resumable). "
        "Training with --set distill.teacher=T reads it, centres it on the training-set mean and "
        "L2-normalises it. Teachers: dlib (pip install 'cqa-face[distill]'), a CQA-Face .safetensors "
        "checkpoint, or an .onnx face embedder.",
    )
    p.add_argument("dataset", help="aligned identity folder (e.g. from `cqa align`), or raw photos with --align")
    p.add_argument("--teacher", required=True, help="dlib | PATH.safetensors | PATH.onnx")
    p.add_argument("--align", action="store_true",
                   help="DATASET holds raw photos: align them into the cache first (as data.align=True does)")
    p.add_argument("--mixes", type=int, default=0, metavar="N",
                   help="also make N teacher-labelled mixes of two people's faces (distill.mixes; "
                   "DATASET/distill/<teacher>-mixes<N>-s<seed>.safetensors)")
    p.add_argument("--mix-seed", type=int, default=0, help="seed of the mixes (default 0)")
    p.add_argument("--batch-size", type=int, default=32, help="faces per teacher call (default 32)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    # imported when the command runs, so `cqa --help` and the other commands never load torch
    from cqa_core.data.datasets import ensure_aligned
    from cqa_core.training.distill import compute_targets
    from cqa_core.training.mixes import compute_mixes

    root = Path(args.dataset).expanduser()
    if not root.is_dir():
        raise FileNotFoundError(f"dataset folder not found: {root}")
    if args.align:
        root = ensure_aligned(root, progress=not args.no_progress)
    out = compute_targets(root, args.teacher, args.batch_size, progress=not args.no_progress)
    print(out)
    if args.mixes:
        print(compute_mixes(root, args.teacher, args.mixes, args.mix_seed, args.batch_size,
                            progress=not args.no_progress))
    return 0
