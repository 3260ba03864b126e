"""An analysis on disk: overlay PNGs and a JSON of its numbers (what ``cqa explain`` writes).

    files = write_report(fa, out_dir, model_label, image="a.jpg", other="b.jpg")

Files in ``out_dir``:
  a_branch{i}.png      branch i's attention on photo a (its quality score is in analysis.json)
  a_aligned.png        the aligned 112 x 112 face a
  a_{method}.png       with a second face: each pair map of face a on its photo (b_* likewise)
  analysis.json        quality, relation, embedding norm, diversity, region shares; with a second
                       face the similarity, its (b+1) x (b+1) decomposition and leave-one-branch-out

numpy, Pillow and OpenCV only: the analysis is already made.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from cqa_core.explain.render import crop_support, overlay
from cqa_core.explain.result import FaceAnalysis


def face_numbers(fa: FaceAnalysis) -> dict[str, Any]:
    """The JSON-able numbers of one FaceAnalysis (no images); the branch readings only for CQA-Face."""
    common = {"align_method": fa.align_method, "affine": fa.affine.tolist(), "embedding_norm": fa.embedding_norm}
    if not fa.branches:
        return common
    return {
        **common,
        "quality": fa.quality.tolist(),
        "relation": fa.relation.tolist(),
        "cal": fa.cal,
        "cal_matrix": fa.cal_matrix.tolist(),
        "gaussian": fa.gaussian.tolist(),
        "iou_top20": fa.iou.tolist(),
        "entropy": fa.entropy.tolist(),
        "coverage": fa.coverage.tolist(),
        "region_shares": {k: v.tolist() for k, v in fa.region_shares.items()},
    }


def _save(path: Path, array: np.ndarray) -> None:
    Image.fromarray(array).save(path)


def write_face(out: Path, prefix: str, fa: FaceAnalysis, alpha: float) -> list[str]:
    """Overlay PNGs of one face; returns the file names."""
    names = [f"{prefix}_aligned.png"]
    _save(out / names[0], fa.aligned)
    for ov in fa.overlays(on_photo=True, alpha=alpha) if fa.branches else []:
        names.append(f"{prefix}_branch{ov.branch}.png")
        _save(out / names[-1], ov.image)
    for method in fa.maps:
        heat = fa.map_on_photo(method)
        lo, hi = float(heat.min()), float(heat.max())
        names.append(f"{prefix}_{method}.png")
        support = crop_support(fa.affine, fa.photo.shape[1::-1], fa.aligned.shape[0])  # tint only where the model looked
        _save(out / names[-1], overlay(fa.photo, (heat - lo) / (hi - lo + 1e-12), alpha, support))
    return names


def write_report(fa: FaceAnalysis, out: str | Path, model: str, image: str, other: str | None = None,
                 alpha: float = 0.5) -> list[str]:
    """Write the PNGs and ``analysis.json`` of an analysis (and its pair) into ``out``; the file names."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    report: dict[str, Any] = {"image": str(image), "model": model, "a": face_numbers(fa),
                              "files": write_face(out, "a", fa, alpha)}
    if fa.other is not None:
        report.update({"other": str(other), "b": face_numbers(fa.other), "similarity": fa.similarity})
        report["files"] += write_face(out, "b", fa.other, alpha)
    if fa.decomposition is not None:
        report.update({
            "decomposition": fa.decomposition.tolist(), "decomposition_note":
                "rows: face a's branch terms then its bias term; columns: face b's; entries sum to similarity",
            "leave_one_out": fa.leave_one_out.tolist(),
        })
    (out / "analysis.json").write_text(json.dumps(report, indent=2))
    return [*report["files"], "analysis.json"]
