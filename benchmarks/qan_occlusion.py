"""Does the QAN see occlusion? Clean vs synthetically masked LFW faces, per branch.

Faces: the first photo of each of the first N people of LFW (sorted names), MTCNN-aligned
through the cache (only these N photos are aligned when the cache is not complete). Face i gets
``apply_mask(kind=MASK_KINDS[i % 7], seed=i)``. Per face: which branch puts the largest / smallest share of its (clean-face)
attention inside the mask, and how each branch's quality S_hat changes. Printed:

* most-covered branch loses more quality than the least-covered one: % of faces;
* overall quality (attention-weighted, ``explain.quality.overall_quality``) falls: % of faces;
* median quality change of the most-covered branch and of the overall quality;
* the same for heavy blur (sigma 5) and 4x down-scaling instead of a mask (the whole face is
  degraded, so only the overall row applies).

    .venv/bin/python benchmarks/qan_occlusion.py [--checkpoint M.safetensors] [--faces 200] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np


def lfw_faces(n: int) -> np.ndarray:
    """(n, 112, 112, 3) uint8: the first aligned photo of each of the first n LFW people.

    People and photos are chosen from the source folder (sorted names; LFW numbers each person's
    photos from 0001). With a complete aligned cache its crops are read as they are; otherwise only
    these n photos are aligned into the cache (``data.verification.aligned_pair_photos``, the same
    MTCNN + v2 fit as ``ensure_aligned``), not all 13,233 of LFW.
    """
    from PIL import Image

    from cqa_core.data.align_run import out_name
    from cqa_core.data.pairs import Pair, resolve_image
    from cqa_core.data.verification import aligned_pair_photos
    from cqa_core.settings import Settings

    src = Settings.from_env().lfw.resolve()
    people = sorted(p.name for p in src.iterdir() if p.is_dir())[:n]
    rels = [resolve_image(src, name, 1).relative_to(src).as_posix() for name in people]
    root = aligned_pair_photos(src, [Pair(name, 1, name, 1, True, 0) for name in people])
    return np.stack([np.asarray(Image.open(Path(root) / out_name(rel)).convert("RGB")) for rel in rels])


def main(argv: list[str] | None = None) -> dict:
    from cqa_core.checkpoint import resolve_model
    from cqa_core.data.degrade import MASK_KINDS, apply_mask, blur, downscale
    from cqa_core.explain.quality import occlusion_probe, overall_quality, quality_report

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", default=None, help="model (default: the bundled default model)")
    ap.add_argument("--faces", type=int, default=200)
    ap.add_argument("--json", default=None, help="also write the figures here")
    args = ap.parse_args(argv)

    model, label, _ = resolve_model(args.checkpoint)
    faces = lfw_faces(args.faces)
    masked, alpha = zip(*(apply_mask(f, MASK_KINDS[i % len(MASK_KINDS)], seed=i) for i, f in enumerate(faces)),
                        strict=True)
    probe = occlusion_probe(model, faces, np.stack(masked), np.stack(alpha))
    result = {"model": label, "faces": len(faces),
              "mask_most_covered_loses_more": probe.most_loses_more, "mask_overall_falls": probe.overall_falls,
              "mask_median_change_most_covered": probe.median_most_change,
              "mask_median_change_overall": probe.median_overall_change}
    clean = quality_report(model, faces)
    q_clean = overall_quality(clean.quality, clean.maps112)  # (N,)
    for name, fn in (("blur5", lambda f: blur(f, 5.0)), ("downscale4", lambda f: downscale(f, 4.0))):
        rep = quality_report(model, np.stack([fn(f) for f in faces]))
        change = overall_quality(rep.quality, rep.maps112) - q_clean  # (N,)
        result[f"{name}_overall_falls"] = float((change < 0).mean())
        result[f"{name}_median_change_overall"] = float(np.median(change))
    result["overall_quality_clean_median"] = float(np.median(q_clean))
    print(f"model: {label}; {len(faces)} LFW faces")
    print("| degradation | most-covered branch loses more | overall quality falls | median change, most-covered | median change, overall |")
    print("|---|---:|---:|---:|---:|")
    print(f"| synthetic mask | {100 * probe.most_loses_more:.1f}% | {100 * probe.overall_falls:.1f}% "
          f"| {probe.median_most_change:+.3f} | {probe.median_overall_change:+.3f} |")
    for name in ("blur5", "downscale4"):
        print(f"| {name} | n/a | {100 * result[f'{name}_overall_falls']:.1f}% | n/a "
              f"| {result[f'{name}_median_change_overall']:+.3f} |")
    print(f"median overall quality of the clean faces: {result['overall_quality_clean_median']:.3f}")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main()
