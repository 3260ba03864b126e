"""``cqa audit DATASET --out audit.parquet``: per-face quality of a whole folder or RecordIO.

Runs as one process or, for data-parallel inference, under ``torchrun`` (one shard of the chunks
per process); a killed run resumes from its finished chunks. See :mod:`cqa_core.evaluation.audit`.
"""

from __future__ import annotations

import argparse
import sys

from cqa_core.commands.common import add_model_argument, main_of


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "audit", help="per-face QAN quality, branch qualities, CAL penalty, embedding norm -> Parquet",
        description="One row per face of DATASET (lfw | celeba299 | a folder of identity folders | "
        "PREFIX.rec). Resumable; under torchrun each process audits its share of the chunks.",
    )
    p.add_argument("dataset", help="lfw | celeba299 | FOLDER (aligned crops, or photos to align) | PREFIX.rec")
    p.add_argument("--out", required=True, help="the Parquet file to write (partial chunks in OUT.parts/)")
    add_model_argument(p, "a CQA-Face .safetensors checkpoint or run folder (default: $CQA_CHECKPOINT, else the bundled model)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--chunk", type=int, default=1024, help="faces per resumable part (default 1024)")
    p.add_argument("--workers", type=int, default=2, help="DataLoader decode workers per process (default 2)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda (under torchrun: cuda:LOCAL_RANK)")
    p.add_argument("--restart", action="store_true", help="discard the partial results of an earlier run")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    # imported when the command runs, so `cqa --help` and the other commands never load torch
    from cqa_core.checkpoint import resolve_model
    from cqa_core.evaluation.audit import run_audit
    from cqa_core.evaluation.audit_source import open_source
    from cqa_core.evaluation.audit_table import pyarrow
    from cqa_core.training.distributed import teardown

    if args.batch_size < 1 or args.workers < 0:
        raise ValueError("--batch-size must be >= 1 and --workers >= 0")
    pyarrow()
    src = open_source(args.dataset, args.settings)
    model, label, _ = resolve_model(args.model or args.settings.checkpoint, "cpu")
    try:
        summary = run_audit(src, args.out, model, label, chunk=args.chunk, batch_size=args.batch_size,
                            workers=args.workers, device=args.device, restart=args.restart,
                            progress=not args.no_progress)
    finally:
        teardown()
    if summary is not None:
        print(f"cqa audit  {src.kind} {src.root}  model={label}  processes={summary['processes']}")
        print(f"  faces {summary['faces']}  chunks {summary['chunks']} ({summary['chunks_done_before']} done before)  "
              f"{summary['seconds']:.1f} s  {summary['faces_per_s']} faces/s")
        print(f"wrote {summary['out']}")
    return 0


if __name__ == "__main__":  # python -m cqa_core.commands.audit ... (what torchrun launches)
    sys.exit(main_of(register, "audit"))
