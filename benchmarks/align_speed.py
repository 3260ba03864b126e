"""Alignment throughput (faces/s per core): MTCNN detect + 5-point similarity warp to 112 x 112.

Baseline: ``align_image`` one photo at a time (what ``cqa align`` does per worker). Compared in
the same run: MTCNN on batches of same-size photos (facenet-pytorch accepts a list) + the same
warp, and the warp alone (the cost left once landmarks are known, e.g. from alignment.csv).
One torch thread; ``cqa align --workers 2`` runs two such processes. Rates are faces per
CPU-second of this process (``time.process_time``), i.e. per core, even on a busy machine.

    .venv/bin/python benchmarks/align_speed.py [--n 200] [--batch 16]
"""

from __future__ import annotations

import argparse
import time

import cv2
import numpy as np
import torch

from cqa_core.data.align import align_image, fit_template, get_detector, load_image, warp
from cqa_core.settings import Settings


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--batch", type=int, default=16)
    args = ap.parse_args()
    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    root = Settings.from_env().lfw
    files = sorted(root.glob("*/*.jpg"))[:: 13233 // args.n][: args.n]
    imgs = [load_image(f) for f in files]
    det = get_detector()
    align_image(imgs[0])  # warm up
    t = time.process_time()
    faces = [align_image(im) for im in imgs]
    base = len(imgs) / (time.process_time() - t)
    t = time.process_time()
    n_found = 0
    for s in range(0, len(imgs), args.batch):
        chunk = imgs[s:s + args.batch]
        boxes, probs, points = det.detect(chunk, landmarks=True)
        for im, b, p in zip(chunk, boxes, points, strict=True):
            if b is not None and len(b):
                i = int(np.argmax((b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])))
                warp(im, fit_template(np.asarray(p[i], float)))
                n_found += 1
    batched = len(imgs) / (time.process_time() - t)
    t = time.process_time()
    for im, f in zip(imgs, faces, strict=True):
        warp(im, f.affine)
    warp_only = len(imgs) / (time.process_time() - t)
    methods = {m: sum(f.method == m for f in faces) for m in ("mtcnn", "center")}
    print(f"{len(imgs)} LFW photos 250x250, 1 thread; per-image result: {methods}")
    print(f"{'path':<42}{'faces/s/core':>14}{'x baseline':>12}")
    for name, r in [("align_image, one at a time (baseline)", base),
                    (f"MTCNN batch {args.batch} + warp", batched), ("warp only (landmarks known)", warp_only)]:
        print(f"{name:<42}{r:>14.1f}{r / base:>12.2f}")


if __name__ == "__main__":
    main()
