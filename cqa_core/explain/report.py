"""An analysis on disk: map PNGs with their colour bars and a JSON of its numbers (what ``cqa explain`` writes).

    files = write_report(analysis, out_dir, model_label, image="a.jpg", other="b.jpg", kinds=kinds)

Files in ``out_dir``:
  a_branch{i}.png      branch i's attention on photo a (a recognizer with branches; its quality
                       score is in analysis.json), on one scale shared across the branches
  a_aligned.png        the aligned face a (the recognizer's chip)
  a_{method}.png       with a second face: each pair map of face a on its photo (b_* likewise), on one
                       scale shared across the pair
  analysis.json        embedding norm, alignment; with branches quality, relation, diversity, region
                       shares; with a second face the similarity, each map method's checks, and with
                       branches its (b+1) x (b+1) decomposition and leave-one-branch-out; ``maps``: for
                       every PNG of a map, its method, normalisation, vmin, vmax, signed and unit

Every map PNG is drawn by :mod:`cqa_core.explain.pictures`: the photo with the map on
:mod:`~cqa_core.explain.maprender`'s scale, its colour bar with the unit, and a line giving the range
and normalisation (signed maps on a diverging colormap centred on zero). numpy, Pillow, matplotlib
and OpenCV only: the analysis is already made.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from cqa_core.explain.maprender import SHARED_BRANCHES, SHARED_PAIR, MapScale
from cqa_core.explain.pictures import (
    ATTENTION,
    MapKind,
    branch_scales,
    framed,
    kind_of,
    on_photo,
    pair_scales,
)
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


def map_scales(analysis: FaceAnalysis | PairAnalysis, kinds: Mapping[str, MapKind],
               normalisation: str = SHARED_PAIR) -> dict[str, list[MapScale]]:
    """method -> the scale of each face's map ([a] or [a, b]), pair maps and single-face maps alike."""
    faces = [analysis.a, analysis.b] if isinstance(analysis, PairAnalysis) else [analysis]
    stacks: dict[str, list[np.ndarray]] = {}
    for fa in faces:
        for method, m in fa.maps.items():
            stacks.setdefault(method, []).append(m)
    if isinstance(analysis, PairAnalysis):
        stacks.update({method: list(m) for method, m in analysis.maps.items()})
    return {method: pair_scales(ms, kinds.get(method) or kind_of({"name": method}), normalisation)
            for method, ms in stacks.items()}


def write_face(out: Path, prefix: str, fa: FaceAnalysis, alpha: float, maps: dict[str, np.ndarray],
               scales: Mapping[str, MapScale], branch_normalisation: str = SHARED_BRANCHES) -> list[dict[str, Any]]:
    """PNGs of one face and its ``maps`` (method -> (S, S) on its chip), each framed with its colour bar;
    returns one record per file: {"file", "face"} and, for a map, its scale (``MapScale.as_json``)."""
    records: list[dict[str, Any]] = [{"file": f"{prefix}_aligned.png", "face": prefix}]
    _save(out / records[0]["file"], fa.aligned)
    br = fa.branches
    if br is not None:
        for i, scale in enumerate(branch_scales(br.attention, branch_normalisation, ATTENTION)):
            picture = on_photo(fa, br.attention[i], scale, alpha, photo_map=br.attention_photo[i])
            records.append({"file": f"{prefix}_branch{i}.png", "face": prefix, "branch": i, **scale.as_json()})
            _save(out / records[-1]["file"], framed(picture, scale, f"branch {i}  q={br.quality[i]:.2f}"))
    for method, chip_map in maps.items():
        scale = scales[method]
        records.append({"file": f"{prefix}_{method}.png", "face": prefix, **scale.as_json()})
        _save(out / records[-1]["file"], framed(on_photo(fa, chip_map, scale, alpha), scale, method))
    return records


def write_report(analysis: FaceAnalysis | PairAnalysis, out: str | Path, model: str, image: str,
                 other: str | None = None, alpha: float = 0.5, kinds: Mapping[str, MapKind] | None = None,
                 normalisation: str = SHARED_PAIR, branch_normalisation: str = SHARED_BRANCHES) -> list[str]:
    """Write the PNGs and ``analysis.json`` of a face's or a pair's analysis into ``out``; the file names.

    Args:
        kinds: method -> :class:`~cqa_core.explain.pictures.MapKind` (signed, unit), from the registry's
            records (``cqa explain`` passes them); a method missing here gets ``maprender.UNITS``'s.
        normalisation: the pair maps' scale, "shared across pair" or "per map".
        branch_normalisation: the branch attention maps' scale, "shared across branches" or "per map".
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    pair = analysis if isinstance(analysis, PairAnalysis) else None
    fa = pair.a if pair else analysis
    scales = map_scales(analysis, kinds or {}, normalisation)
    sides = (0, 1) if pair else (0,)

    def maps_of(side: int) -> dict[str, np.ndarray]:
        face = pair.face(side) if pair else fa
        return {**face.maps, **({k: v[side] for k, v in pair.maps.items()} if pair else {})}

    records = []
    for side in sides:
        face = pair.face(side) if pair else fa
        records += write_face(out, "ab"[side], face, alpha, maps_of(side),
                              {m: s[side] for m, s in scales.items()}, branch_normalisation)
    report: dict[str, Any] = {"image": str(image), "model": model, "a": face_numbers(fa),
                              "files": [r["file"] for r in records],
                              "maps": [r for r in records if "method" in r]}
    if pair is not None:
        report.update({"other": str(other), "b": face_numbers(pair.b), "similarity": pair.similarity,
                       "checks": {m: [{"ok": c.ok, "text": c.text, **c.values} for c in cs]
                                  for m, cs in pair.checks.items()}})
    if pair is not None and pair.branches is not None:
        report.update({
            "decomposition": pair.branches.decomposition.tolist(), "decomposition_note":
                "rows: face a's branch terms then its bias term; columns: face b's; entries sum to similarity",
            "leave_one_out": pair.branches.leave_one_out.tolist(),
        })
    (out / "analysis.json").write_text(json.dumps(report, indent=2))
    return [*report["files"], "analysis.json"]
