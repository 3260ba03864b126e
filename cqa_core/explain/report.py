"""An analysis on disk: overlay PNGs and a JSON of its numbers (what ``cqa explain`` writes).

    files = write_report(analysis, out_dir, model_label, image="a.jpg", other="b.jpg")

Files in ``out_dir``:
  a_branch{i}.png      branch i's attention on photo a (a recognizer with branches; its quality
                       score is in analysis.json)
  a_aligned.png        the aligned 112 x 112 face a
  a_{method}.png       with a second face: each pair map of face a on its photo (b_* likewise)
  analysis.json        embedding norm, alignment; with branches quality, relation, diversity, region
                       shares; with a second face the similarity, each map method's checks, and with
                       branches its (b+1) x (b+1) decomposition and leave-one-branch-out

numpy, Pillow and OpenCV only: the analysis is already made.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from cqa_core.explain.render import crop_support, overlay
from cqa_core.explain.result import FaceAnalysis, PairAnalysis


def face_numbers(fa: FaceAnalysis) -> dict[str, Any]:
    """The JSON-able numbers of one FaceAnalysis (no images); the branch readings where it has branches."""
    common = {"align_method": fa.align_method, "affine": fa.affine.tolist(), "embedding_norm": fa.embedding_norm}
    br = fa.branches
    if br is None:
        return common
    return {
        **common,
        "quality": br.quality.tolist(),
        "relation": br.relation.tolist(),
        "cal": br.cal,
        "cal_matrix": br.cal_matrix.tolist(),
        "gaussian": br.gaussian.tolist(),
        "iou_top20": br.iou.tolist(),
        "entropy": br.entropy.tolist(),
        "coverage": br.coverage.tolist(),
        "region_shares": {k: v.tolist() for k, v in br.region_shares.items()},
    }


def _save(path: Path, array: np.ndarray) -> None:
    Image.fromarray(array).save(path)


def write_face(out: Path, prefix: str, fa: FaceAnalysis, alpha: float, maps: dict[str, np.ndarray]) -> list[str]:
    """Overlay PNGs of one face and its ``maps`` (method -> (S, S) on its chip); returns the file names."""
    names = [f"{prefix}_aligned.png"]
    _save(out / names[0], fa.aligned)
    for ov in fa.overlays(on_photo=True, alpha=alpha):
        names.append(f"{prefix}_branch{ov.branch}.png")
        _save(out / names[-1], ov.image)
    for method, chip_map in maps.items():
        heat = fa.on_photo(chip_map)
        lo, hi = float(heat.min()), float(heat.max())
        names.append(f"{prefix}_{method}.png")
        support = crop_support(fa.affine, fa.photo.shape[1::-1], fa.aligned.shape[0])  # tint only where the model looked
        _save(out / names[-1], overlay(fa.photo, (heat - lo) / (hi - lo + 1e-12), alpha, support))
    return names


def write_report(analysis: FaceAnalysis | PairAnalysis, out: str | Path, model: str, image: str,
                 other: str | None = None, alpha: float = 0.5) -> list[str]:
    """Write the PNGs and ``analysis.json`` of a face's or a pair's analysis into ``out``; the file names."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    pair = analysis if isinstance(analysis, PairAnalysis) else None
    fa = pair.a if pair else analysis
    maps_of = (lambda side: {**pair.face(side).maps, **{k: v[side] for k, v in pair.maps.items()}}) if pair \
        else (lambda side: dict(fa.maps))
    report: dict[str, Any] = {"image": str(image), "model": model, "a": face_numbers(fa),
                              "files": write_face(out, "a", fa, alpha, maps_of(0))}
    if pair is not None:
        report.update({"other": str(other), "b": face_numbers(pair.b), "similarity": pair.similarity,
                       "checks": {m: [{"ok": c.ok, "text": c.text, **c.values} for c in cs]
                                  for m, cs in pair.checks.items()}})
        report["files"] += write_face(out, "b", pair.b, alpha, maps_of(1))
    if pair is not None and pair.branches is not None:
        report.update({
            "decomposition": pair.branches.decomposition.tolist(), "decomposition_note":
                "rows: face a's branch terms then its bias term; columns: face b's; entries sum to similarity",
            "leave_one_out": pair.branches.leave_one_out.tolist(),
        })
    (out / "analysis.json").write_text(json.dumps(report, indent=2))
    return [*report["files"], "analysis.json"]
