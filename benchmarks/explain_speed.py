"""Speed of the explanation engine on the light model (CPU by default).

    PYTHONPATH=. .venv/bin/python benchmarks/explain_speed.py --threads 2 --repeats 15

Measured in one run, interleaved so a busy machine slows both sides alike (median of repeats):

* ``analyse()`` of one aligned face, cache cleared each time (goal < 100 ms), and of a pair with
  the hook-free Grad-CAM of both faces;
* hook-free Grad-CAM of cos(e_a, e_b) vs pytorch-grad-cam's ``GradCAM`` on the same target and
  layer (goal: ours >= 2x faster), batch 1 and batch 8;
* captum IntegratedGradients with 32 steps (one face), vs one plain forward as the baseline.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable

import numpy as np
import torch

from cqa_core.config import ModelConfig
from cqa_core.explain import Analyser, integrated_gradients, library_cam, similarity_gradcam
from cqa_core.explain.toy import calibrate
from cqa_core.model import create_model


def timed(fn: Callable[[], object]) -> float:
    """Seconds one call takes."""
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def race(fns: dict[str, Callable[[], object]], repeats: int) -> dict[str, float]:
    """Median seconds of each function, calls interleaved, after one warm-up call each."""
    for fn in fns.values():
        fn()
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            times[name].append(timed(fn))
    return {k: statistics.median(v) for k, v in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads (default 2)")
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--json", action="store_true", help="print the raw numbers as JSON too")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = calibrate(create_model(ModelConfig(stem="light", branches=4))).to(args.device)
    rng = np.random.default_rng(0)
    faces = [rng.integers(0, 256, (112, 112, 3), dtype=np.uint8) for _ in range(16)]
    a1, b1 = faces[0], faces[1]
    a8, b8 = np.stack(faces[:8]), np.stack(faces[8:])
    an = Analyser()

    def analyse_face() -> None:
        an.clear()
        an(model, a1)

    def analyse_pair() -> None:
        an.clear()
        an(model, a1, b1, methods=("gradcam",))

    def forward() -> None:
        with torch.no_grad():
            model(torch.zeros(1, 3, 112, 112, device=args.device))

    r = {}
    r.update(race({"forward": forward, "analyse_face": analyse_face, "analyse_pair": analyse_pair}, args.repeats))
    r.update({f"{k}_b1": v for k, v in race({
        "gradcam_hook_free": lambda: similarity_gradcam(model, a1, b1),
        "gradcam_library": lambda: library_cam(model, a1, b1, method="GradCAM"),
    }, args.repeats).items()})
    r.update({f"{k}_b8": v for k, v in race({
        "gradcam_hook_free": lambda: similarity_gradcam(model, a8, b8),
        "gradcam_library": lambda: library_cam(model, a8, b8, method="GradCAM"),
    }, max(3, args.repeats // 3)).items()})
    r.update(race({"ig32": lambda: integrated_gradients(model, a1, b1, steps=32)}, max(3, args.repeats // 3)))

    ms = {k: 1000 * v for k, v in r.items()}
    print(f"explain_speed: light stem, b=4, device {args.device}, {args.threads} thread(s), torch {torch.__version__}")
    print(f"  one forward (baseline)         {ms['forward']:8.1f} ms")
    print(f"  analyse() one face             {ms['analyse_face']:8.1f} ms  ({ms['analyse_face'] / ms['forward']:.1f}x a forward; goal < 100 ms)")
    print(f"  analyse() pair + Grad-CAM      {ms['analyse_pair']:8.1f} ms")
    for b in ("b1", "b8"):
        ours, lib = ms[f"gradcam_hook_free_{b}"], ms[f"gradcam_library_{b}"]
        print(f"  Grad-CAM {b}: hook-free {ours:7.1f} ms, pytorch-grad-cam {lib:7.1f} ms  -> {lib / ours:.2f}x faster (goal >= 2x)")
    print(f"  IntegratedGradients 32 steps   {ms['ig32']:8.1f} ms  ({ms['ig32'] / ms['forward']:.1f}x a forward)")
    if args.json:
        print(json.dumps(ms, indent=2))


if __name__ == "__main__":
    main()
