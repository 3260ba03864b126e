"""``cqa explain IMAGE [OTHER] --out DIR [--checkpoint PATH]``: overlay PNGs and a JSON of the numbers.

Without ``--checkpoint`` the model is ``$CQA_CHECKPOINT`` or the bundled default
(:func:`cqa_core.model.resolve_model`), as for ``cqa eval`` and ``cqa workbench``.

Writes into DIR:
  a_branch{i}.png      branch i's attention on photo a (quality score in analysis.json)
  a_aligned.png        the aligned 112 x 112 face a
  a_{method}.png       with OTHER: each pair map of face a on its photo (b_* likewise for OTHER)
  analysis.json        quality, relation, embedding norm, diversity, region shares; with OTHER
                       the similarity, its (b+1)x(b+1) decomposition and leave-one-branch-out
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


def _face_numbers(fa) -> dict:
    """The JSON-able numbers of one FaceAnalysis (no images)."""
    return {
        "align_method": fa.align_method,
        "affine": fa.affine.tolist(),
        "quality": fa.quality.tolist(),
        "relation": fa.relation.tolist(),
        "embedding_norm": fa.embedding_norm,
        "cal": fa.cal,
        "cal_matrix": fa.cal_matrix.tolist(),
        "gaussian": fa.gaussian.tolist(),
        "iou_top20": fa.iou.tolist(),
        "entropy": fa.entropy.tolist(),
        "coverage": fa.coverage.tolist(),
        "region_shares": {k: v.tolist() for k, v in fa.region_shares.items()},
    }


def _save(path, array) -> None:
    from PIL import Image

    Image.fromarray(array).save(path)


def _write_face(out, prefix: str, fa, alpha: float) -> list[str]:
    """Overlay PNGs of one face; returns the file names."""
    from cqa_core.explain.cams import crop_support, overlay

    names = [f"{prefix}_aligned.png"]
    _save(out / names[0], fa.aligned)
    for ov in fa.overlays(on_photo=True, alpha=alpha):
        names.append(f"{prefix}_branch{ov.branch}.png")
        _save(out / names[-1], ov.image)
    for method in fa.maps:
        heat = fa.map_on_photo(method)
        lo, hi = float(heat.min()), float(heat.max())
        names.append(f"{prefix}_{method}.png")
        support = crop_support(fa.affine, fa.photo.shape[1::-1])  # tint only where the model looked
        _save(out / names[-1], overlay(fa.photo, (heat - lo) / (hi - lo + 1e-12), alpha, support))
    return names


def run(args: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    from cqa_core.explain.analysis import FaceAnalysis, analyse
    from cqa_core.model import resolve_model

    model, label, _ = resolve_model(args.checkpoint, args.device)
    methods = tuple(m.strip() for m in args.methods.split(",") if m.strip())
    fa = analyse(model, args.image, args.other, methods=methods)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    report = {"image": str(args.image), "model": label, "a": _face_numbers(fa), "files": _write_face(out, "a", fa, args.alpha)}
    if fa.other is not None:
        fb: FaceAnalysis = fa.other
        report.update({
            "other": str(args.other), "b": _face_numbers(fb), "similarity": fa.similarity,
            "decomposition": fa.decomposition.tolist(), "decomposition_note":
                "rows: face a's branch terms then its bias term; columns: face b's; entries sum to similarity",
            "leave_one_out": fa.leave_one_out.tolist(),
        })
        report["files"] += _write_face(out, "b", fb, args.alpha)
    (out / "analysis.json").write_text(json.dumps(report, indent=2))
    line = f"{label}: wrote {len(report['files'])} PNGs and analysis.json to {out}"
    if fa.similarity is not None:
        line += f"; similarity {fa.similarity:.4f}"
    print(line)
    return 0
