"""The stem-feature cache (issue 27 item 2): its build time, and an epoch with it against a frozen-stem
epoch without it, for the light stem and an iResNet-50 (random weights: the timing does not depend on them).

    PYTHONPATH=. nice -n 10 python benchmarks/feature_cache.py --stems light r50 --faces 0 64 --steps 6

Data: CelebA-299, the default preset's training set (6,274 faces), cut with the fixed LFW centre
affine into a temporary folder (``CenterDetector``, ~1 ms a photo instead of MTCNN's ~0.5 s:
alignment is a one-time cost both paths share, and which pixels a face holds does not change the
timing); ``--data DIR`` takes an aligned folder instead. ``--faces N`` per stem uses the first N
faces only (0 = all of them).

Each run is ``configs/default_cpu.py`` as ``cqa train`` runs it (bf16 on the CPU, its degradations,
2 loader workers, batch 64) with ``freeze_stem=true``, no distillation teacher, and

* build: ``Trainer(config)`` with ``cache_views=4`` (K) and an empty cache folder, which computes the
  stem output of the clean face and 4 degraded views of every face; with N faces, extrapolated
  linearly to 6,274 faces (said so in the output);
* epoch: ``--steps`` training steps after a warm-up step, with the cache (only the heads run) and
  without it (``cache_views=0``: the frozen stem runs at every step, on freshly degraded faces),
  scaled to the preset's 98 steps per epoch (6,274 // 64). The ratio is the cache's speed-up.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import torch

from cqa_core.data.align import CenterDetector, align_image, load_image
from cqa_core.settings import Settings
from cqa_core.training.callbacks import Callback
from cqa_core.training.overrides import apply_overrides, load_preset
from cqa_core.training.trainer import Trainer

PRESET = Path(__file__).resolve().parents[1] / "configs" / "default_cpu.py"
FACES = 6274  # CelebA-299 as the preset trains on it
BATCH = 64  # the preset's batch: FACES // BATCH = 98 steps per epoch


class StepClock(Callback):
    """perf_counter after every step (``log_every=1``)."""

    def __init__(self) -> None:
        self.times: list[float] = []

    def on_step(self, trainer: Trainer, metrics: dict) -> None:
        self.times.append(time.perf_counter())


def centre_crops(src: Path, dst: Path) -> int:
    """Every photo of ``src``'s identity folders as a 112 x 112 centre-affine crop under ``dst``."""
    detector, n = CenterDetector(), 0
    for photo in sorted(src.glob("*/*.jpg")):
        out = dst / photo.parent.name / f"{photo.stem}.png"
        out.parent.mkdir(parents=True, exist_ok=True)
        face = align_image(load_image(photo), detector=detector).image  # (112, 112, 3) RGB
        cv2.imwrite(str(out), cv2.cvtColor(face, cv2.COLOR_RGB2BGR))
        n += 1
    return n


def first_faces(root: Path, n: int, dst: Path) -> Path:
    """A folder of links to the first ``n`` faces of ``root`` (sorted identity folders, then files)."""
    for photo in sorted(p for p in root.glob("*/*") if p.suffix in (".png", ".jpg"))[:n]:
        (dst / photo.parent.name).mkdir(parents=True, exist_ok=True)
        (dst / photo.parent.name / photo.name).symlink_to(photo.resolve())
    return dst


def config_for(stem: str, root: Path, work: Path, views: int, steps: int):
    return apply_overrides(load_preset(PRESET), [
        f"model.stem={stem}", "freeze_stem=true", f"cache_views={views}", f"cache_dir={work / 'cache'}",
        "distill.teacher=None", "eval_pairs=None", "tensorboard=false", "progress=false", "log_every=1",
        f"data.root={root}", "data.align=false", f"max_steps={steps + 1}", f"out_dir={work / f'run{views}'}"])


def seconds_per_step(trainer: Trainer) -> float:
    """Mean wall time of the steps after the first (the first fills the loader's workers)."""
    clock = StepClock()
    trainer.callbacks.append(clock)
    trainer.fit()
    return float(np.mean(np.diff(clock.times)))


def measure(stem: str, root: Path, steps: int, work: Path) -> dict[str, float]:
    """Faces, build time (s) of their cache, and seconds per step with and without the cache."""
    shutil.rmtree(work, ignore_errors=True)
    t0 = time.perf_counter()
    trainer = Trainer(config_for(stem, root, work, 4, steps))  # builds the cache
    build = time.perf_counter() - t0
    n = len(trainer.dataset)
    with_cache = seconds_per_step(trainer)
    del trainer  # its loader workers go with it
    without = seconds_per_step(Trainer(config_for(stem, root, work, 0, steps)))
    return {"faces": n, "build_s": build, "with_s": with_cache, "without_s": without}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--stems", nargs="+", default=["light", "r50"])
    ap.add_argument("--faces", nargs="+", type=int, default=[0, 64], help="faces per stem (0 = all)")
    ap.add_argument("--steps", type=int, default=6, help="timed steps per epoch measurement")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--data", default=None, help="aligned CelebA-299 folder (default: centre crops, made here)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    tmp = Path(tempfile.mkdtemp(prefix="bench-feature-cache-"))
    try:
        if args.data:
            root = Path(args.data)
        else:
            t0 = time.perf_counter()
            n = centre_crops(Settings.from_env().data_root / "celeba299", tmp / "celeba299")
            root = tmp / "celeba299"
            print(f"data: {n} CelebA-299 photos, centre-affine crops in {time.perf_counter() - t0:.0f} s (not timed below)")
        cpu = next((ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                    if ln.startswith("model name")), platform.machine()) if Path("/proc/cpuinfo").exists() else platform.machine()
        print(f"machine: {cpu}, {os.cpu_count()} cores, {torch.get_num_threads()} torch threads, "
              f"torch {torch.__version__}; preset {PRESET.name}, K = 4, batch {BATCH}, {args.steps} timed steps")
        per_epoch = FACES // BATCH
        for stem, faces in zip(args.stems, args.faces, strict=True):
            data = root if faces == 0 else first_faces(root, faces, tmp / f"first{faces}")
            r = measure(stem, data, args.steps, tmp / f"work-{stem}")
            full = r["build_s"] * FACES / r["faces"]
            how = "measured" if r["faces"] >= FACES else f"extrapolated from {r['faces']} faces ({r['build_s']:.0f} s)"
            e_with, e_without = r["with_s"] * per_epoch, r["without_s"] * per_epoch
            print(f"{stem}: cache build for {FACES} faces x 5 views {full / 60:.1f} min ({how}, "
                  f"{1000 * r['build_s'] / r['faces'] / 5:.1f} ms a view); epoch ({per_epoch} steps) with the cache "
                  f"{e_with:.1f} s, without {e_without:.1f} s: {e_without / e_with:.1f}x faster "
                  f"(steps {1000 * r['with_s']:.0f} ms vs {1000 * r['without_s']:.0f} ms)", flush=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
