"""Deletion / insertion AUC of Grad-CAM, IG, occlusion, attention, random and flat maps on LFW.

Pairs: the first N same-person pairs of LFW View 1 ``pairsDevTest.txt`` (``--different`` for
different-person pairs), aligned crops from the ``ensure_aligned`` cache when it is complete
(else the fixed LFW centre affine; ``--align`` forces one). Each map explains cos(e_a, e_b) for
face a; ties are broken at random and averaged over ``--draws`` orders (see
``cqa_core.explain.faithfulness``); the blur baseline is used for deletion and insertion.

    nice -n 10 .venv/bin/python benchmarks/faithfulness.py --pairs 100

prints a Markdown table: mean AUC +- standard error over pairs, and the paired difference to the
random map. ``flat`` vs ``random`` is the check that ties carry no hidden order: they must agree
within the standard error.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np
import torch

from cqa_core.explain.faithfulness_bench import (
    METHODS,
    format_table,
    lfw_dev_pairs,
    resolve_align,
    run,
    summarize,
)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=100, help="number of pairs (default 100)")
    parser.add_argument("--different", action="store_true", help="different-person pairs instead of same")
    parser.add_argument("--align", choices=("auto", "cache", "center"), default="auto")
    parser.add_argument("--steps", type=int, default=20, help="deletion / insertion steps (default 20)")
    parser.add_argument("--draws", type=int, default=5, help="random tie-breaking orders per map (default 5)")
    parser.add_argument("--methods", default=",".join(METHODS), help="comma-separated subset of " + ",".join(METHODS))
    parser.add_argument("--checkpoint", default=None, help="weights (default: the bundled default model)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", default=None, help="also write per-pair AUCs to this JSON file")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    from cqa_core.model import load_default, resolve_model

    model = resolve_model(args.checkpoint)[0] if args.checkpoint else load_default()
    model.eval()
    align = resolve_align(args.align)
    pairs = lfw_dev_pairs(args.pairs, same=not args.different, align=align)
    methods = tuple(args.methods.split(","))
    t0 = time.perf_counter()

    def progress(n: int) -> None:
        print(f"\r{n}/{len(pairs)} pairs, {time.perf_counter() - t0:.0f} s", end="", file=sys.stderr, flush=True)

    results = run(model, pairs, progress, methods=methods, steps=args.steps, draws=args.draws)
    print(file=sys.stderr)
    c = model.config
    kind = "different-person" if args.different else "same-person"
    print(f"faithfulness: {len(results)} LFW pairsDevTest {kind} pairs, {align}-aligned crops, model {c.stem} b={c.branches}"
          f"{' QAN' if c.qan else ''}, blur baseline, {args.steps} steps, {args.draws} tie draws, "
          f"{time.perf_counter() - t0:.0f} s")
    print(f"mean cos(e_a, e_b) = {np.mean([r.similarity for r in results]):.3f}\n")
    print(format_table(summarize(results)))
    rel = [r.ig_relative_delta for r in results if r.ig_relative_delta is not None]
    if rel:
        conv = sum(bool(r.ig_converged) for r in results if r.ig_converged is not None)
        print(f"\nIG: |delta| / |gap| median {np.median(rel):.4f}, max {np.max(rel):.4f}; "
              f"converged within 1 % on {conv}/{len(rel)} pairs")
    if args.json:
        with open(args.json, "w") as f:
            json.dump([r._asdict() for r in results], f, indent=1)


if __name__ == "__main__":
    main()
