"""``cqa eval``: verification / masked / cross-quality / identification / EDC numbers for a model.

Parses the flags into ``evaluation.protocols.Options``, calls ``evaluate`` and prints its rows. With
``--out`` it records a run (``evaluation.runs.record``), also under ``torchrun`` (each process scores
its share of the faces; ``python -m cqa_core.commands.eval`` is what torchrun launches).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from cqa_core.commands.common import add_model_argument, main_of
from cqa_core.settings import AlignMode

PAIR_PROTOCOLS = ("verify", "masked-m2n", "masked-m2m", "cross-quality")  # = evaluation.protocols' (tested)
PROTOCOLS = (*PAIR_PROTOCOLS, "identify", "edc")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "eval", help="LFW-protocol verification, TAR@FAR, masked / cross-quality, rank-1, quality EDC",
        description="Embeds aligned faces and prints a table; --json writes the full result.",
    )
    add_model_argument(p)
    p.add_argument("--data", default="lfw", help="lfw | celeba299 | bin:PATH | pairs:ROOT:PAIRS_FILE (default lfw)")
    p.add_argument("--protocol", choices=PROTOCOLS, default="verify")
    p.add_argument("--json", dest="json_out", default=None, metavar="OUT", help="write the result as JSON")
    p.add_argument("--out", default=None, metavar="RUN_DIR",
                   help="keep the run: run.json, pairs.parquet (every pair's score), faces.parquet and the "
                   "embeddings in RUN_DIR (pair protocols; faces come from the embedding cache where it has them)")
    p.add_argument("--no-cache", action="store_true", help="with --out: score every face, ignoring the embedding cache")
    p.add_argument("--flip", action="store_true", help="flip-sum embeddings (insightface test-time flip)")
    p.add_argument("--limit", type=int, default=None, help="use N pairs (identities for identify), spread evenly")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--device", default=None, help="cpu | cuda (default: cuda when available)")
    p.add_argument("--align", choices=[m.value for m in AlignMode], default="mtcnn",
                   help="raw photos: MTCNN (cached with ensure_aligned for lfw) or the fixed centre crop")
    p.add_argument("--mask", default="random", help="mask kind for masked-* protocols (default random per pair)")
    p.add_argument("--degrade", default="downscale", help="cross-quality: blur|downscale|noise|occlude|jpeg|mask|random")
    p.add_argument("--severity", type=int, default=3, help="cross-quality severity 1..5 (default 3)")
    p.add_argument("--roc", action="store_true", help="include ROC arrays in the JSON")
    p.add_argument("--edc-pairs", choices=PAIR_PROTOCOLS, default="verify",
                   help="edc: the pairs whose error-versus-discard curve is measured (clean = verify)")
    p.add_argument("--edc-max-discard", type=float, default=0.2, help="edc: upper end of the area (default 0.2)")
    p.add_argument("--folds", type=int, default=None, metavar="K",
                   help="cross-validation folds for pair lists without a header (stratified: every fold "
                   "holds same and different pairs) and for bin: (consecutive blocks); default 10. "
                   "LFW-format lists with a header keep their own folds")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    # imported when the command runs, so `cqa --help` and the other commands never load torch
    import torch

    from cqa_core.evaluation.protocols import Options, evaluate
    from cqa_core.evaluation.runs.record import default_cache, record_run
    from cqa_core.recognizers.load import load_recognizer
    from cqa_core.training.distributed import setup

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    dist = setup(device) if args.out else None  # under torchrun: join the group; each rank its own device
    device = str(dist.device) if dist else device
    rec = load_recognizer(args.model, device, checkpoint=args.settings.checkpoint)
    name = args.model or args.settings.checkpoint or rec.name
    opts = Options(flip=args.flip, limit=args.limit, batch_size=args.batch_size, device=device,
                   align=AlignMode.parse(args.align), mask=args.mask, degrade=args.degrade, severity=args.severity,
                   roc=args.roc, folds=args.folds, edc_pairs=args.edc_pairs, edc_max_discard=args.edc_max_discard,
                   places=args.settings)
    if args.out:
        recorded = record_run(rec, args.data, args.protocol, opts, args.out,
                              cache=None if args.no_cache else default_cache(args.settings),
                              spec=args.model or args.settings.checkpoint or "default", dist=dist)
        if recorded is None:  # another rank than 0: its share is in the cache, rank 0 writes the run
            return 0
        result, rows = recorded
    else:
        result, rows = evaluate(rec, args.data, args.protocol, opts)
    result = {**result, "checkpoint": name}
    print(f"cqa eval  data={args.data}  protocol={args.protocol}  model={name}  flip={args.flip}")
    for k, v in rows:
        print(f"  {k:<22}{v:>22}")
    print(f"  {'time':<22}{result['timing']['total_s']:>21.1f}s")
    if args.json_out:
        Path(args.json_out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json_out).write_text(json.dumps(result, indent=2))
        print(f"wrote {args.json_out}")
    if args.out:
        print(f"wrote the run to {args.out} (cqa compare RUN_A RUN_B compares two)")
    return 0


if __name__ == "__main__":  # python -m cqa_core.commands.eval ... (what torchrun launches)
    sys.exit(main_of(register, "eval"))
