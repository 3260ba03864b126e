"""112 x 112 JPEG decode + cheap augment throughput per core (issue 3 goal: >= 3000 img/s/core).

Baseline: Pillow decode (``Image.open(...).convert("RGB")`` -> tensor). Compared in the same run:
OpenCV (libjpeg-turbo) and torchvision.io decoders, each with the CPU-side augment FaceFolder
does (random horizontal flip), and FaceFolder.__getitem__ end to end (file read + decode).
Single thread: ``torch.set_num_threads(1)``, ``cv2.setNumThreads(1)``; rates are items per
CPU-second of the process (``time.process_time``), i.e. per core, even on a busy machine.

    .venv/bin/python benchmarks/data_decode.py [--root DIR] [--n 2000]
"""

from __future__ import annotations

import argparse
import time
import warnings
from pathlib import Path

import cv2
import torch

from cqa_core.data.datasets import FaceFolder, aligned_dir, decode_chw, random_flip

warnings.filterwarnings("ignore", category=DeprecationWarning)


def rate(fn, items, repeats: int = 3) -> float:
    """Best of ``repeats`` items per CPU-second of this (single-threaded) process: per-core
    throughput that other jobs on a shared machine do not distort (wall time would)."""
    best = 0.0
    for _ in range(repeats):
        t = time.process_time()
        for it in items:
            fn(it)
        best = max(best, len(items) / max(time.process_time() - t, 1e-9))
    return best


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--root", default=str(aligned_dir("celeba299")))
    ap.add_argument("--n", type=int, default=2000)
    args = ap.parse_args()
    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    ds = FaceFolder(args.root)
    paths = [p for p, _ in ds.samples[:: max(1, len(ds) // args.n)]][: args.n]
    blobs = [Path(p).read_bytes() for p in paths]
    print(f"{len(blobs)} JPEGs from {args.root}, mean {sum(map(len, blobs)) / len(blobs) / 1024:.1f} KiB, 1 thread")
    base = rate(lambda b: random_flip(decode_chw(b, "pil")), blobs)
    rows = [("pil decode + flip (baseline)", base)]
    for dec in ("cv2", "torchvision"):
        rows.append((f"{dec} decode + flip", rate(lambda b, d=dec: random_flip(decode_chw(b, d)), blobs)))
    idx = list(range(0, len(ds), max(1, len(ds) // args.n)))[: args.n]
    rows.append(("FaceFolder[i] (read + cv2 + no aug)", rate(lambda i: ds[i], idx)))
    print(f"{'path':<40}{'img/s/core':>12}{'x baseline':>12}")
    for name, r in rows:
        print(f"{name:<40}{r:>12.0f}{r / base:>12.2f}")


if __name__ == "__main__":
    main()
