"""``cqa eval``: verification / masked / cross-quality / identification / EDC numbers for a model."""

from __future__ import annotations

import argparse

PAIR_PROTOCOLS = ("verify", "masked-m2n", "masked-m2m", "cross-quality")
PROTOCOLS = (*PAIR_PROTOCOLS, "identify", "edc")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "eval", help="LFW-protocol verification, TAR@FAR, masked / cross-quality, rank-1, quality EDC",
        description="Embeds aligned faces and prints a table; --json writes the full result.",
    )
    p.add_argument("--checkpoint", default=None,
                   help="model .safetensors (default: $CQA_CHECKPOINT, else the embedded default model)")
    p.add_argument("--data", default="lfw", help="lfw | celeba299 | bin:PATH | pairs:ROOT:PAIRS_FILE (default lfw)")
    p.add_argument("--protocol", choices=PROTOCOLS, default="verify")
    p.add_argument("--json", dest="json_out", default=None, metavar="OUT", help="write the result as JSON")
    p.add_argument("--flip", action="store_true", help="flip-sum embeddings (insightface test-time flip)")
    p.add_argument("--limit", type=int, default=None, help="use N pairs (identities for identify), spread evenly")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--device", default=None, help="cpu | cuda (default: cuda when available)")
    p.add_argument("--align", choices=("mtcnn", "center"), default="mtcnn",
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


def load_eval_model(path: str | None, device: str):
    """The model to evaluate: --checkpoint, $CQA_CHECKPOINT, or cqa_core.model.load_default()."""
    from cqa_core.model import resolve_model

    model, label, _ = resolve_model(path, device)
    return model, str(path) if path else label


def refold(ps, spec: str, folds: int | None):
    """Set ``ps.folds`` to ``folds`` folds where the data defines none of its own.

    Headerless ``pairs:`` lists get stratified folds over the pairs actually evaluated (after
    ``--limit``); ``bin:`` sets get ``folds`` consecutive blocks. ``lfw``, ``celeba299`` and
    pair lists with a header keep their folds; asking for others there is an error.
    """
    import numpy as np

    from cqa_core.data.pairs import DEFAULT_FOLDS, has_header, stratified_folds
    from cqa_core.evaluate import default_folds

    k = DEFAULT_FOLDS if folds is None else folds
    if k < 1:
        raise ValueError(f"--folds must be >= 1, got {k}")
    if spec.startswith("pairs:") and not has_header(spec.split(":", 2)[2]):
        ps.folds = np.asarray(stratified_folds(ps.issame, k))  # (N,)
    elif spec.startswith("bin:"):
        ps.folds = default_folds(len(ps.issame), k)  # (N,)
    elif folds is not None:
        raise ValueError(f"--folds is for pair lists without a header and bin: sets; {spec} keeps its "
                         f"own {len(set(ps.folds.tolist()))} folds")
    return ps


def _second_side(images, index, protocol: str, args: argparse.Namespace, offset: int = 0):
    import numpy as np

    from cqa_core.data.degrade import degrade, masked_side

    if protocol != "cross-quality":
        return masked_side(images, index, args.mask, offset)
    out = np.empty((len(index), 112, 112, 3), np.uint8)
    for k, i in enumerate(index):
        out[k] = degrade(images[i], args.degrade, args.severity, seed=k + offset)
    return out


def pair_sides(ps, protocol: str, args: argparse.Namespace, fn):
    """``fn`` (images (M, 112, 112, 3) -> per-image rows) applied to both sides of every pair.

    Clean sides reuse one pass over ``ps.images``; degraded sides (mask, cross-quality) are built
    per pair with the same seeds as the accuracy protocols. Returns (side 1, side 2), each with N rows.
    """
    import numpy as np

    rows = fn(ps.images)
    pick = (lambda r, i: r[i]) if isinstance(rows, np.ndarray) else (lambda r, i: r.take(i))
    s1, s2 = pick(rows, ps.index1), pick(rows, ps.index2)
    if protocol in ("masked-m2n", "masked-m2m", "cross-quality"):
        s2 = fn(_second_side(ps.images, ps.index2, protocol, args))
    if protocol == "masked-m2m":
        s1 = fn(_second_side(ps.images, ps.index1, protocol, args, len(ps.index1)))
    return s1, s2


def run(args: argparse.Namespace) -> int:
    import time

    import torch

    from cqa_core.evaluate import embed, evaluate_pairs, identification_rank1, split_gallery

    if args.protocol == "edc" and not 0 < args.edc_max_discard < 1:
        raise ValueError(f"--edc-max-discard must be in (0, 1), got {args.edc_max_discard}")
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    t0 = time.perf_counter()
    model, model_name = load_eval_model(args.checkpoint, device)
    emb_kw = dict(batch_size=args.batch_size, flip=args.flip, device=device)
    timing: dict[str, float] = {}
    result: dict = {"data": args.data, "protocol": args.protocol, "checkpoint": model_name, "flip": args.flip}
    if args.protocol == "identify":
        from cqa_core.data.verification import load_identities

        images, labels = load_identities(args.data, args.limit)
        timing["load_s"] = time.perf_counter() - t0
        emb = embed(model, images, **emb_kw)
        gal, probe = split_gallery(labels, per_id=1)
        rank1 = identification_rank1(emb[gal], labels[gal], emb[probe], labels[probe])
        result.update(rank1=rank1, identities=int(len(set(labels.tolist()))), gallery=len(gal), probes=len(probe))
        rows = [("rank-1", f"{100 * rank1:.2f}%"), ("identities", str(result["identities"])), ("probes", str(len(probe)))]
    else:
        from cqa_core.data.verification import load_pairset

        ps = refold(load_pairset(args.data, limit=args.limit, align=args.align), args.data, args.folds)
        timing["load_s"] = time.perf_counter() - t0
        t1 = time.perf_counter()
        if args.protocol == "edc":
            from cqa_core.commands.eval_edc import edc_result

            result_edc, rows = edc_result(model, ps, args, emb_kw, pair_sides)
            timing["embed_s"] = time.perf_counter() - t1
            result.update(result_edc)
            return _report(args, result, rows, timing, t0, model_name, device)
        e1, e2 = pair_sides(ps, args.protocol, args, lambda im: embed(model, im, **emb_kw))  # (N, D) each
        timing["embed_s"] = time.perf_counter() - t1
        r = evaluate_pairs(e1, e2, ps.issame, ps.folds)
        result.update(r.to_dict(roc=args.roc), images=int(len(ps.images)))
        if args.protocol.startswith("masked"):
            result["mask"] = args.mask
        if args.protocol == "cross-quality":
            result.update(degrade=args.degrade, severity=args.severity)
        rows = [("accuracy", f"{100 * r.accuracy:.2f}% +- {100 * r.accuracy_std:.2f}"),
                ("best threshold (cos)", f"{r.best_threshold:.4f}"), ("AUC", f"{r.auc:.4f}")]
        rows += [(f"TAR @ FAR={far:g}", f"{100 * v:.2f}%") for far, v in r.tar_at_far.items()]
        rows += [("pairs (same)", f"{r.n_pairs} ({r.n_same})"), ("images", str(len(ps.images)))]
    return _report(args, result, rows, timing, t0, model_name, device)


def _report(args: argparse.Namespace, result: dict, rows: list, timing: dict, t0: float, model_name: str,
            device: str) -> int:
    """Print the table and write the JSON."""
    import json
    import time

    timing["total_s"] = time.perf_counter() - t0
    result["timing"] = {k: round(v, 2) for k, v in timing.items()}
    result["device"] = device
    print(f"cqa eval  data={args.data}  protocol={args.protocol}  model={model_name}  flip={args.flip}")
    for k, v in rows:
        print(f"  {k:<22}{v:>22}")
    print(f"  {'time':<22}{timing['total_s']:>21.1f}s")
    if args.json_out:
        from pathlib import Path

        Path(args.json_out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json_out).write_text(json.dumps(result, indent=2))
        print(f"wrote {args.json_out}")
    return 0
