"""``cqa eval --protocol edc``: QAN quality as a face-image-quality score (see :mod:`cqa_core.edc`).

The pairs are those of ``--edc-pairs`` (clean ``verify``, ``masked-m2n``, ``masked-m2m``,
``cross-quality``; built exactly as the accuracy protocols build them). Readings compared, each
turned into a pair quality by taking the lower of the two faces:

* ``qan``: the overall QAN quality (:func:`cqa_core.explain.quality.overall_quality`);
* ``norm``: the L2 norm of the pre-normalisation embedding (FC-512 + BN output), MagFace-style;
* ``random``: uniform random qualities (mean of ``random_draws`` discard orders).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

READINGS = {
    "qan": "overall QAN quality: attention-mass-weighted mean of S_hat_i (explain.quality.overall_quality)",
    "norm": "L2 norm of the pre-normalisation embedding (FC-512 + BN output), MagFace-style",
    "random": "uniform random pair qualities, mean curve of the draws",
}


def spearman(a: Any, b: Any) -> float:
    """Rank correlation of two float vectors (ties broken by position: fine for continuous readings)."""
    import numpy as np

    ra = np.argsort(np.argsort(a)).astype(np.float64)  # (N,)
    rb = np.argsort(np.argsort(b)).astype(np.float64)  # (N,)
    return float(np.corrcoef(ra, rb)[0, 1])


def edc_result(model: Any, ps: Any, args: argparse.Namespace, emb_kw: dict, pair_sides: Callable
               ) -> tuple[dict, list[tuple[str, str]]]:
    """The EDC result dict (JSON-ready) and the rows ``cqa eval`` prints."""
    import numpy as np

    from cqa_core.edc import edc, pair_quality
    from cqa_core.evaluate import pair_scores
    from cqa_core.face_scores import score_faces

    s1, s2 = pair_sides(ps, args.edc_pairs, args, lambda im: score_faces(model, im, **emb_kw))
    scores = pair_scores(s1.embedding, s2.embedding)  # (N,)
    qualities = {"qan": pair_quality(s1.overall, s2.overall), "norm": pair_quality(s1.norm, s2.norm)}  # (N,) each
    res = edc(scores, ps.issame, qualities, max_discard=args.edc_max_discard)
    side = {name: {"side1_mean": float(getattr(s1, f).mean()), "side2_mean": float(getattr(s2, f).mean())}
            for name, f in (("qan", "overall"), ("norm", "norm"))}
    result = {"edc_pairs": args.edc_pairs, "pair_quality": "min of the two faces", "readings": READINGS,
              "face_quality": side, "n_pairs": int(len(scores)), "images": int(len(ps.images)),
              "spearman_qan_norm": spearman(np.r_[s1.overall, s2.overall], np.r_[s1.norm, s2.norm]), **res}
    if args.edc_pairs.startswith("masked"):
        result["mask"] = args.mask
    if args.edc_pairs == "cross-quality":
        result.update(degrade=args.degrade, severity=args.severity)
    rows = [("pairs", args.edc_pairs), ("mated / impostor", f"{res['n_mated']} / {res['n_impostor']}")]
    for fmr, row in res["fmr"].items():
        rows.append((f"FMR={fmr} threshold", f"{row['threshold']:.4f}"))
        rows.append(("  FNMR, no discard", f"{100 * row['fnmr_at_0']:.2f}%"))
        k = round(args.edc_max_discard * 100)
        for name, c in row["curves"].items():
            std = f" +- {c['area_std']:.4f}" if "area_std" in c else ""
            rows.append((f"  area {name} (0-{k}%)", f"{c['area']:.4f}{std}"))
    rows.append(("spearman(qan, norm)", f"{result['spearman_qan_norm']:.3f}"))
    return result, rows
