"""112 x 112 JPEG decode + cheap augment throughput per core (issue 3 goal: >= 3000 img/s/core).

Baseline: Pillow decode (``Image.open(...).convert("RGB")`` -> tensor). Compared in the same run:
OpenCV (libjpeg-turbo) and torchvision.io decoders, each with the CPU-side augment FaceFolder
does (random horizontal flip), and FaceFolder.__getitem__ end to end (file read + decode).

Training degradations (issue 11, ``cqa_core.data.augment``, run in the DataLoader workers):
``AugmentedFaces[(i, key)]`` over the same FaceFolder, as the trainer's workers call it (read +
cv2 decode + degradations + visibility map), with the CPU default preset's probabilities
(``configs/default_cpu.py``), with nothing firing (the wrapper's own cost: per-item generator,
visibility map), and with each degradation alone at probability 1 (its cost when it fires). ``--no-augment`` leaves these rows out.

Single thread: ``torch.set_num_threads(1)``, ``cv2.setNumThreads(1)``; rates are items per
CPU-second of the process (``time.process_time``), i.e. per core, even on a busy machine.

    .venv/bin/python benchmarks/data_decode.py [--root DIR] [--n 2000] [--no-augment]
"""

from __future__ import annotations

import argparse
import dataclasses
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
    ap.add_argument("--no-augment", action="store_true", help="decode rows only")
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
    plain = rate(lambda i: ds[i], idx)
    rows.append(("FaceFolder[i] (read + cv2 + no aug)", plain))
    if not args.no_augment:
        rows += augment_rows(ds, idx)
    print(f"{'path':<48}{'img/s/core':>12}{'x baseline':>12}{'x FaceFolder[i]':>17}")
    for name, r in rows:
        print(f"{name:<48}{r:>12.0f}{r / base:>12.2f}{r / plain:>17.2f}")


def augment_rows(ds: FaceFolder, idx: list[int]) -> list[tuple[str, float]]:
    """``AugmentedFaces[(i, key)]`` rates: the CPU preset's mix, then each degradation alone at p = 1."""
    from cqa_core.config import AugmentConfig
    from cqa_core.data.augment import AugmentedFaces

    preset = _preset_augment()
    keyed = [(i, 1_000_003 + i) for i in idx]  # the sampler's (index, key) items
    aug = AugmentedFaces(ds, preset)
    rows = [(f"AugmentedFaces, default_cpu mix ({_probs(preset)})", rate(lambda it: aug[it], keyed))]
    idle = AugmentedFaces(ds, AugmentConfig(p_gray=1e-12))  # enabled, but nothing ever fires
    rows.append(("AugmentedFaces, wrapper only (nothing fires)", rate(lambda it: idle[it], keyed)))
    for field in ("p_mask", "p_occluder", "p_blur", "p_lowres", "p_jitter", "p_color", "p_gray"):
        one = AugmentedFaces(ds, AugmentConfig(**{field: 1.0}))
        rows.append((f"AugmentedFaces, {field[2:]} only (p = 1)", rate(lambda it, a=one: a[it], keyed)))
    return rows


def _preset_augment():
    """``configs/default_cpu.py``'s AugmentConfig (the CPU default preset)."""
    import runpy

    root = Path(__file__).resolve().parents[1]
    return runpy.run_path(str(root / "configs" / "default_cpu.py"))["config"].augment


def _probs(cfg) -> str:
    return ", ".join(f"{f.name[2:]} {getattr(cfg, f.name):g}" for f in dataclasses.fields(cfg)
                     if f.name.startswith("p_") and getattr(cfg, f.name) > 0)


if __name__ == "__main__":
    main()
