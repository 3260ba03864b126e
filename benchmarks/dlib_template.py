"""Where MTCNN's 5 landmarks fall inside dlib's own 150 x 150 chip: the ``dlib`` alignment template.

    nice .venv/bin/python benchmarks/dlib_template.py                 # derive it (200 photos)
    nice .venv/bin/python benchmarks/dlib_template.py --lfw 600       # check it on LFW View 2 pairs
    nice .venv/bin/python benchmarks/dlib_template.py --lfw 0 --chips ours   # all 6,000, our chips

Derivation. For LFW deep-funneled photos of ``pairsDevTrain.txt`` (View 1, spread evenly over
its distinct images), two pipelines run on the same photo:

* dlib's own: its HOG frontal face detector (the box holding MTCNN's landmarks; a box around
  them when HOG finds none), its 5-point shape predictor, and
  ``get_face_chip_details(shape, size=150, padding=0.25)``, whose rotated rect gives the photo ->
  chip affine D (``dlib_resnet.chip_affine``; checked against ``get_face_chip``'s pixels);
* ours: MTCNN (``AlignmentStore``: the workbench's on-disk cache, so MTCNN runs once per photo).

MTCNN's five points are mapped through D into dlib's chip; the template is their mean over the
photos, as fractions of 150 (the median is printed beside it). Residuals printed, in chip pixels:
the mean distance of a photo's mapped points from the template; how far our chip (the eye-weighted
fit of MTCNN's points onto the template, ``base.cut_chip``) is from dlib's (mean displacement of
the chip's pixels); and the mean absolute 0-255 pixel difference of the two chips.

Check (``--lfw N``): N pairs of ``pairs.txt`` spread evenly, each image embedded by dlib's ResNet
from three chips: ours (MTCNN + template), dlib's shape predictor in a box around MTCNN's
landmarks (how ``benchmarks/teacher_lfw.py`` measured 96.6 % on all 6,000 pairs), and dlib's own
HOG pipeline. Accuracy with the 10-fold protocol (``evaluate.evaluate_scores``) for dlib's metric
(minus the Euclidean distance), the cosine, and the cosine of descriptors centred on their mean.
"""

from __future__ import annotations

import argparse
import hashlib
import time
from pathlib import Path
from typing import Any

import numpy as np


def lfw_images(root: Path, pairs_file: str, n: int | None) -> list[Path]:
    """``n`` distinct photos of a pair list, spread evenly over its sorted (name, idx) images."""
    from cqa_core.data.pairs import read_pairs, resolve_image, unique_images
    from cqa_core.data.verification import subsample

    uniq = unique_images(read_pairs(root / pairs_file))
    return [resolve_image(root, *uniq[i]) for i in subsample(len(uniq), n)]


def mtcnn(path: Path, store: Any) -> tuple[np.ndarray, Any]:
    """(photo (H, W, 3) uint8, its MTCNN ``AlignedFace``), through the on-disk alignment store."""
    from cqa_core.data.imageio import decode_image

    data = path.read_bytes()
    photo = decode_image(data, name=str(path))  # (H, W, 3)
    return photo, store.align(photo, hashlib.sha1(data).hexdigest())


def chip_shift(ours: np.ndarray, theirs: np.ndarray, size: int = 150) -> float:
    """Mean distance (px) between where two photo -> chip affines (2, 3) send the same photo points,
    over the chip's pixel grid: how far one chip is displaced from the other."""
    from cqa_core.data.align import invert_affine, transform_points

    g = np.stack(np.meshgrid(np.arange(size), np.arange(size)), -1).reshape(-1, 2).astype(np.float64)  # (S*S, 2)
    back = transform_points(invert_affine(theirs), g)  # (S*S, 2) photo points under their chip
    return float(np.linalg.norm(transform_points(ours, back) - g, axis=1).mean())


def derive(paths: list[Path], store: Any) -> dict[str, Any]:
    """Map MTCNN's points into dlib's chip on every photo; template + residuals (see module doc)."""
    import dlib

    from cqa_core.data.align import LANDMARK_WEIGHTS, transform_points, umeyama, warp
    from cqa_core.recognizers import dlib_resnet as dr

    pts, affines, lms, photos, boxes, check = [], [], [], [], {"hog": 0, "landmarks": 0}, []
    for k, path in enumerate(paths):
        photo, face = mtcnn(path, store)
        if face.method != "mtcnn":
            continue
        shape, box = dr.dlib_shape(photo, face.landmarks, detect=True)
        boxes[box] += 1
        d = dr.chip_affine(dlib.get_face_chip_details(shape, size=150, padding=0.25))  # (2, 3)
        own = np.asarray(dlib.get_face_chip(photo, shape, size=150, padding=0.25), np.float64)  # (150, 150, 3)
        check.append(np.abs(warp(photo, d, 150).astype(np.float64) - own).mean())
        pts.append(transform_points(d, face.landmarks))  # (5, 2) MTCNN points in dlib's chip
        affines.append(d)
        lms.append(np.asarray(face.landmarks, np.float64))
        photos.append(photo)
        if (k + 1) % 50 == 0:
            print(f"  {k + 1}/{len(paths)} photos", flush=True)
    pts_a = np.stack(pts)  # (N, 5, 2)
    out: dict[str, Any] = {"photos": len(pts_a), "boxes": boxes, "affine_check": float(np.mean(check))}
    for name, t in (("mean", pts_a.mean(axis=0)), ("median", np.median(pts_a, axis=0))):  # (5, 2)
        ours = [umeyama(lm, t, LANDMARK_WEIGHTS) for lm in lms]  # N x (2, 3)
        out[name] = {
            "template": t / 150.0,
            "point_residual": float(np.linalg.norm(pts_a - t, axis=2).mean()),
            "per_point": np.linalg.norm(pts_a - t, axis=2).mean(axis=0),
            "chip_shift": float(np.mean([chip_shift(u, d) for u, d in zip(ours, affines, strict=True)])),
            "pixel_diff": float(np.mean([np.abs(warp(p, u, 150).astype(np.float64) - warp(p, d, 150)).mean()
                                         for p, u, d in zip(photos, ours, affines, strict=True)])),
        }
    return out


CHIPS = {"ours": "ours: MTCNN + dlib template", "box": "dlib shape predictor, box around MTCNN",
         "hog": "dlib HOG + shape predictor"}


def check_lfw(root: Path, n: int | None, store: Any, which: list[str]) -> dict[str, Any]:
    """dlib's LFW View 2 accuracy on ``n`` spread pairs (all when None) from the chips ``which``
    (keys of :data:`CHIPS`; see module doc)."""
    from cqa_core.evaluate import evaluate_scores, l2_normalize

    from cqa_core.data.pairs import read_pairs, resolve_image, unique_images
    from cqa_core.data.verification import subsample
    from cqa_core.recognizers import dlib_resnet as dr
    from cqa_core.recognizers.base import cut_chip, face_landmarks

    pairs = read_pairs(root / "pairs.txt")
    pairs = [pairs[i] for i in subsample(len(pairs), n)]
    uniq = unique_images(pairs)
    where = {k: i for i, k in enumerate(uniq)}
    rec = dr.load_dlib()
    cut = {"ours": lambda photo, face: cut_chip(photo, face, rec.preprocess)[0],
           "box": lambda photo, face: dr.dlib_chip(photo, face_landmarks(face), detect=False)[0],
           "hog": lambda photo, face: dr.dlib_chip(photo, face_landmarks(face), detect=True)[0]}
    chips: dict[str, list[np.ndarray]] = {k: [] for k in which}
    t0 = time.perf_counter()
    for k, key in enumerate(uniq):
        photo, face = mtcnn(resolve_image(root, *key), store)
        for w in which:
            chips[w].append(cut[w](photo, face))  # (150, 150, 3)
        if (k + 1) % 100 == 0:
            print(f"  {k + 1}/{len(uniq)} images aligned, {time.perf_counter() - t0:.0f} s", flush=True)
    i1 = np.array([where[(q.name1, q.idx1)] for q in pairs])
    i2 = np.array([where[(q.name2, q.idx2)] for q in pairs])
    same = np.array([q.same for q in pairs])
    folds = np.array([q.fold for q in pairs])
    out: dict[str, Any] = {"pairs": len(pairs), "images": len(uniq)}
    for w, c in chips.items():
        name = CHIPS[w]
        emb = rec.embed(np.stack(c))  # (M, 128)
        unit, centred = l2_normalize(emb), l2_normalize(emb - emb.mean(axis=0))  # (M, 128) x 2
        out[name] = {
            "euclidean": evaluate_scores(-np.linalg.norm(emb[i1] - emb[i2], axis=1), same, folds).accuracy,
            "cosine": evaluate_scores((unit[i1] * unit[i2]).sum(axis=1), same, folds).accuracy,
            "cosine, centred": evaluate_scores((centred[i1] * centred[i2]).sum(axis=1), same, folds).accuracy,
        }
    out["seconds"] = time.perf_counter() - t0
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--photos", type=int, default=200, help="photos for the derivation (default 200)")
    p.add_argument("--pairs-file", default="pairsDevTrain.txt", help="pair list the photos come from")
    p.add_argument("--lfw", type=int, default=None, metavar="N",
                   help="check on N spread pairs of pairs.txt instead (0: all 6,000)")
    p.add_argument("--chips", default="ours,box,hog", help=f"chips of the check, of {','.join(CHIPS)}")
    args = p.parse_args(argv)

    from cqa_core.data.align_store import AlignmentStore
    from cqa_core.data.template import DLIB_TEMPLATE
    from cqa_core.settings import Settings

    root = Settings.from_env().lfw
    store = AlignmentStore()
    if args.lfw is not None:
        which = [w for w in args.chips.split(",") if w]
        if not which or set(which) - set(CHIPS):
            p.error(f"--chips takes a comma list of {', '.join(CHIPS)}")
        r = check_lfw(root, args.lfw or None, store, which)
        print(f"dlib ResNet on {r['pairs']} LFW View 2 pairs ({r['images']} images), {r['seconds']:.0f} s")
        for name in [k for k in r if isinstance(r[k], dict)]:
            accs = "  ".join(f"{m} {100 * a:.2f}%" for m, a in r[name].items())
            print(f"  {name:<40} {accs}")
        return 0
    r = derive(lfw_images(root, args.pairs_file, args.photos), store)
    print(f"{r['photos']} photos with an MTCNN face; dlib boxes: {r['boxes']}; "
          f"cv2 warp with chip_affine vs get_face_chip: {r['affine_check']:.2f} / 255 mean abs")
    for name in ("mean", "median"):
        s = r[name]
        rows = ", ".join(f"[{x:.4f}, {y:.4f}]" for x, y in s["template"])
        print(f"{name} template (fractions of 150): [{rows}]")
        print(f"  mapped points from the template: {s['point_residual']:.2f} px mean "
              f"(per point {np.array2string(s['per_point'], precision=2)}); our chip vs dlib's: displaced "
              f"{s['chip_shift']:.2f} px, pixels differ {s['pixel_diff']:.2f} / 255")
    shift = np.abs(r["mean"]["template"] - DLIB_TEMPLATE).max() * 150
    print(f"largest move of a point from the hard-coded DLIB_TEMPLATE: {shift:.2f} px")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
