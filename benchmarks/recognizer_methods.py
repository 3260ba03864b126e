"""Seconds per pair of every explanation method on every recognizer adapter, on this CPU.

    PYTHONPATH=. nice .venv/bin/python benchmarks/recognizer_methods.py --threads 2 --repeats 3

Adapters: the bundled CQA-Face (112 chip, light stem); an insightface-layout iResNet-50 with random
weights exported to ONNX and loaded white-box through onnx2torch (the size of a real ArcFace
model: 12.6 GFLOPs a face; random weights time the same as trained ones); dlib's ResNet
(black-box, 150 chip, batches split over worker processes). Each method makes the maps of BOTH
faces of one LFW pair (as the dashboard's Pair tab does: ``methods.get(name).fn``) at the
registry's default budget (``methods.default_budget``). The baseline, measured in the same run
and interleaved with the methods, is one embedding of the pair's two chips: each line prints the
method's median seconds and its ratio to that baseline (the machine is noisy; the ratio is what
carries across runs).
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np
import torch

from benchmarks.onnx_latency import race
from cqa_core.checkpoint import load_default
from cqa_core.explain import methods
from cqa_core.explain.methods import Context
from cqa_core.recognizers.arcface import ArcFaceIResNet, export_onnx
from cqa_core.recognizers.base import Recognizer
from cqa_core.recognizers.cqa import from_cqa
from cqa_core.recognizers.dlib_resnet import load_dlib
from cqa_core.recognizers.onnx_model import load_onnx

R50 = (3, 4, 14, 3)  # insightface iresnet50 blocks per stage


def iresnet50_onnx(folder: Path) -> Recognizer:
    """A random-weight iResNet-50 ArcFace exported to ONNX and loaded white-box."""
    rec = load_onnx(export_onnx(ArcFaceIResNet(R50), folder / "r50.onnx"), name="iResNet-50 (ONNX)")
    if not rec.whitebox:
        raise SystemExit(f"the iResNet-50 export did not convert: {rec.note}")
    return rec


def lfw_pair_chips(rec: Recognizer) -> np.ndarray:
    """The first same-person pair of LFW View 1 pairsDevTest as the recognizer's chips (2, S, S, 3)."""
    from benchmarks.faithfulness import dev_pair_chips

    a, b = dev_pair_chips(rec, 1)[0]
    return np.stack([a, b])


def time_pair(rec: Recognizer, chips: np.ndarray, names: list[str], repeats: int) -> dict[str, dict[str, float]]:
    """Median seconds of each method's pair maps and of the baseline (embed both chips), interleaved."""
    fns = {"embed pair (baseline)": lambda: rec.embed(chips)}
    fns |= {n: (lambda n=n: methods.get(n).fn(rec, chips, Context())) for n in names}
    med = race(fns, repeats, warmup=1)  # the warm-up call converts, starts dlib's workers, fills caches
    base = med["embed pair (baseline)"]
    return {k: {"s": v, "x_baseline": v / base} for k, v in med.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", default=None, help="also write the figures to this JSON file")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    out: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        adapters = {"CQA-Face (default, light stem)": (from_cqa(load_default()), ["gradcam", "ig", "occlusion", "rise"]),
                    "iResNet-50 ONNX (white-box)": (iresnet50_onnx(Path(tmp)), ["gradcam", "occlusion", "rise"]),
                    "dlib ResNet (black-box)": (load_dlib(), ["occlusion", "rise"])}
        for label, (rec, names) in adapters.items():
            budget = methods.default_budget(rec)
            print(f"{label}: {rec.describe()}; occlusion {budget.grid}x{budget.grid}, RISE {budget.masks} masks",
                  flush=True)
            res = time_pair(rec, lfw_pair_chips(rec), names, args.repeats)
            for name, r in res.items():
                print(f"  {name:24s} {r['s']:8.3f} s a pair   {r['x_baseline']:8.1f} x baseline", flush=True)
            out[label] = {"budget": budget._asdict(), "methods": res}
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
