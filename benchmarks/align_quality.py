"""How close alignment puts the landmarks to the ArcFace template, from the cached alignment.csv.

For every MTCNN row the detected landmarks are pushed through the stored affine and compared with
the template (pixels in the 112 x 112 crop). Also re-fits the stored landmarks with other eye
weights (what ``cqa_core.data.align.LANDMARK_WEIGHTS`` trades). Needs the aligned caches
(``ensure_aligned``); the version-1 cache is reported too when it is present.

    .venv/bin/python benchmarks/align_quality.py
"""

from __future__ import annotations

import csv

import numpy as np

from cqa_core.data.align import ALIGN_VERSION, umeyama
from cqa_core.data.datasets import aligned_dir
from cqa_core.data.template import ARCFACE_TEMPLATE
from cqa_core.settings import LFW_DIR

AFFINE = ("a00", "a01", "a02", "a10", "a11", "a12")


def errors(points: np.ndarray, affines: np.ndarray) -> np.ndarray:
    """(N, 5) distance of each warped landmark from its template point."""
    warped = np.einsum("nij,nkj->nki", affines[:, :, :2], points) + affines[:, None, :, 2]  # (N, 5, 2)
    return np.linalg.norm(warped - ARCFACE_TEMPLATE, axis=-1)  # (N, 5)


def row(label: str, err: np.ndarray) -> str:
    eyes = err[:, :2].max(1)  # (N,) worse eye
    return (f"| {label} | {len(err)} | {100 * (eyes <= 3).mean():.1f} | {100 * (eyes <= 5).mean():.1f} "
            f"| {np.median(eyes):.2f} | {np.median(err[:, 2:].max(1)):.2f} |")


def main() -> None:
    print("| cache / fit | faces | both eyes <= 3 px % | both eyes <= 5 px % | median worse eye px "
          "| median worst nose/mouth px |\n|---|---:|---:|---:|---:|---:|")
    for name in (LFW_DIR, "celeba299"):
        for version in sorted({1, ALIGN_VERSION}):
            path = aligned_dir(name, version) / "alignment.csv"
            if not path.exists():
                continue
            with open(path, newline="") as f:
                rows = [r for r in csv.DictReader(f) if r["method"] == "mtcnn"]
            pts = np.array([[[float(r[f"lm{i}_{c}"]) for c in "xy"] for i in range(5)] for r in rows])  # (N, 5, 2)
            aff = np.array([[float(r[k]) for k in AFFINE] for r in rows]).reshape(-1, 2, 3)  # (N, 2, 3)
            print(row(f"{name} v{version} (stored affines)", errors(pts, aff)))
            if version == ALIGN_VERSION:
                for w in (1.0, 2.0, 4.0, 8.0):
                    weights = np.array([w, w, 1.0, 1.0, 1.0])
                    refit = np.stack([umeyama(p, ARCFACE_TEMPLATE, weights) for p in pts])  # (N, 2, 3)
                    print(row(f"{name}, eyes weighted {w:g}x (refit)", errors(pts, refit)))


if __name__ == "__main__":
    main()
