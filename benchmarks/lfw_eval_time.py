"""End-to-end LFW evaluation time (6000 pairs, 7701 faces): load aligned faces, embed, score.

Baseline: ``--data lfw`` without flip. Compared in the same run: with flip-sum (twice the
forward passes) and loading through the fixed centre crop (no MTCNN cache). The model is
``--checkpoint`` or a randomly initialised light CQA-Face (timing only; its accuracy is chance).

    .venv/bin/python benchmarks/lfw_eval_time.py [--checkpoint PATH] [--limit N] [--threads 2]
"""

from __future__ import annotations

import argparse
import time
import warnings

import torch

from cqa_core.data.verification import load_pairset
from cqa_core.evaluation.protocols import embed
from cqa_core.metrics import evaluate_pairs

warnings.filterwarnings("ignore", category=DeprecationWarning)


def timed(fn):
    t = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--checkpoint", default=None)
    ap.add_argument("--limit", type=int, default=None, help="pairs (default all 6000)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=128)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if args.checkpoint:
        from cqa_core.checkpoint import load_model

        model = load_model(args.checkpoint)
    else:
        from cqa_core.config import ModelConfig
        from cqa_core.model.cqa_face import create_model

        torch.manual_seed(0)
        model = create_model(ModelConfig(stem="light")).eval()
    rows = []
    for name, align, flip in [("mtcnn cache, no flip (baseline)", "mtcnn", False),
                              ("mtcnn cache, flip-sum", "mtcnn", True),
                              ("centre crop from raw, no flip", "center", False)]:
        ps, t_load = timed(lambda a=align: load_pairset("lfw", limit=args.limit, align=a))
        emb, t_emb = timed(lambda p=ps, f=flip: embed(model, p.images, args.batch_size, flip=f, progress=False))
        r, t_eval = timed(lambda p=ps, e=emb: evaluate_pairs(e[p.index1], e[p.index2], p.issame, p.folds))
        rows.append((name, len(ps.issame), len(ps.images), t_load, t_emb, t_eval, r.accuracy))
    base = sum(rows[0][3:6])
    print(f"LFW View 2, {args.threads} threads, model={args.checkpoint or 'light (random init)'}")
    print(f"{'path':<34}{'pairs':>6}{'faces':>7}{'load s':>8}{'embed s':>9}{'score s':>9}{'total s':>9}{'x base':>8}{'acc':>7}")
    for name, n, m, a, b, c, acc in rows:
        print(f"{name:<34}{n:>6}{m:>7}{a:>8.1f}{b:>9.1f}{c:>9.2f}{a + b + c:>9.1f}{(a + b + c) / base:>8.2f}{acc:>7.3f}")


if __name__ == "__main__":
    main()
