"""Training throughput and MFU: CQA-Face vs the bare iResNet + CosFace, same stem, same run.

    PYTHONPATH=. python benchmarks/train_throughput.py --stem r100 --batch-size 128 --steps 30
    PYTHONPATH=. python benchmarks/train_throughput.py --stem light --batch-size 16 --steps 5 --device cpu
    PYTHONPATH=. python benchmarks/train_throughput.py --stem light --batch-size 64 --steps 12 --device cpu --bf16-vs-fp32

Each step is a full training step as the trainer runs it: uint8 batch on the device ->
normalise + flip -> forward under bf16 autocast (CUDA; on CPU with ``--bf16-vs-fp32``, which
instead times CQA-Face in fp32 NCHW against CQA-Face under CPU bf16 autocast + channels_last, as
``TrainConfig(precision="bf16")`` trains) -> margin head -> loss -> backward -> fused SGD.
Images are synthetic 112 x 112 (no data loading: this measures the model).
FLOPs come from ``torch.utils.flop_counter`` (``cqa_core.profile.count_flops``: one forward,
a multiply-add = 2), plus the head's (B, 512) x (512, K) product, times 3 for forward + backward.
MFU = achieved FLOP/s / the GPU's dense bf16 peak (looked up by name; n/a on CPU / unknown GPUs).
Peak memory (CUDA): ``max_memory_allocated`` over each model's own timed steps (both models stay
resident, so each figure includes the other's weights and optimiser state), and over the whole run.
Needs only torch (+ this repo): runs in the bare GPU image.
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from cqa_core.config import LossConfig, ModelConfig
from cqa_core.losses import CQACriterion
from cqa_core.model import IResNet, create_head, create_model
from cqa_core.preprocess import normalize
from cqa_core.profile import count_flops

PEAK_BF16 = (("H200", 989e12), ("H100 PCIe", 756e12), ("H100", 989e12), ("A100", 312e12))


def peak_flops(device: torch.device) -> float | None:
    """Dense bf16 peak of the GPU (FLOP/s), or None when unknown / CPU."""
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((peak for key, peak in PEAK_BF16 if key in name), None)


class BareNet(nn.Module):
    """iResNet (flatten -> FC-512 -> BN) + CosFace cross-entropy: the insightface baseline."""

    def __init__(self, stem: str, num_classes: int) -> None:
        super().__init__()
        self.model = IResNet(stem)
        self.head = create_head("cosface", 512, num_classes, 64.0, 0.35)

    def forward(self, x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(self.head(self.model(x), labels), labels)


class CQANet(nn.Module):
    """CQA-Face + CosFace + CAL (Eq. 9), as the trainer optimises it."""

    def __init__(self, stem: str, num_classes: int) -> None:
        super().__init__()
        self.model = create_model(ModelConfig(stem=stem))
        self.criterion = CQACriterion(LossConfig(), create_head("cosface", 512, num_classes, 64.0, 0.35))

    def forward(self, x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return self.criterion(self.model(x), labels).total


def make_step(net: nn.Module, device: torch.device, batch: int, num_classes: int, compile_: bool,
              bf16: bool | None = None):
    """A closure running one full training step of ``net`` on a fixed synthetic uint8 batch
    (bf16 autocast + channels_last: None = on CUDA only)."""
    cuda = device.type == "cuda"
    bf16 = cuda if bf16 is None else bf16
    net = net.to(device)
    if bf16:
        net = net.to(memory_format=torch.channels_last)
    opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4,
                          fused=cuda or None, foreach=None if cuda else True)
    run = torch.compile(net) if compile_ else net
    images = torch.randint(0, 256, (batch, 3, 112, 112), dtype=torch.uint8, device=device)  # (B, 3, 112, 112)
    labels = torch.randint(0, num_classes, (batch,), device=device)  # (B,)
    flip = torch.rand(batch, device=device) < 0.5  # (B,)

    def step() -> None:
        x = normalize(images)  # (B, 3, 112, 112)
        x = torch.where(flip[:, None, None, None], x.flip(3), x)
        if bf16:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            loss = run(x, labels)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    return step


def timed(step, device: torch.device, n: int) -> float:
    """Seconds for ``n`` steps (synchronised on CUDA)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    t0 = time.perf_counter()
    for _ in range(n):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - t0


def measure(nets: dict[str, nn.Module], device: torch.device, batch: int, steps: int, warmup: int,
            num_classes: int, compile_: bool, rounds: int = 3,
            bf16: dict[str, bool] | None = None) -> dict[str, dict[str, Any]]:
    """Images/s and MFU per model. Timed steps are split into ``rounds`` that alternate between
    the models (so a noisy, shared machine slows both alike); the median round counts."""
    flops = {k: 3 * (count_flops(n.model) + 2 * 512 * num_classes) for k, n in nets.items()}  # fwd+bwd / image
    bf16 = bf16 or {}
    steps_fn = {k: make_step(n, device, batch, num_classes, compile_, bf16.get(k)) for k, n in nets.items()}
    cuda = device.type == "cuda"
    for fn in steps_fn.values():
        timed(fn, device, warmup)
    overall = torch.cuda.max_memory_allocated(device) if cuda else 0  # warm-up / compile included
    per = max(steps // rounds, 1)
    times: dict[str, list[float]] = {k: [] for k in nets}
    peaks = dict.fromkeys(nets, 0)  # bytes allocated at most during that model's timed steps
    for _ in range(rounds):
        for k, fn in steps_fn.items():
            if cuda:
                torch.cuda.reset_peak_memory_stats(device)
            times[k].append(timed(fn, device, per) / per)
            if cuda:
                peaks[k] = max(peaks[k], torch.cuda.max_memory_allocated(device))
    peak = peak_flops(device)
    out = {}
    for k in nets:
        sec = sorted(times[k])[len(times[k]) // 2]
        ips = batch / sec
        out[k] = {"images_per_s": ips, "step_ms": 1000 * sec, "gflops_per_image_train": flops[k] / 1e9,
                  "mfu": (ips * flops[k] / peak) if peak else None,
                  # includes the other model's resident weights and optimiser state (both stay on the GPU)
                  "peak_memory_gib": peaks[k] / 2**30 if cuda else None}
    if cuda:
        out["peak_memory_gib_both"] = max(overall, *peaks.values()) / 2**30
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--stem", default="r100", help="r18 | r34 | r50 | r100 | light (default r100)")
    p.add_argument("--batch-size", type=int, default=128, help="images per step (default 128)")
    p.add_argument("--steps", type=int, default=20, help="timed steps (default 20)")
    p.add_argument("--warmup", type=int, default=3, help="untimed steps first (default 3)")
    p.add_argument("--num-classes", type=int, default=8631, help="classes of the CosFace head (VGGFace2: 8631)")
    p.add_argument("--compile", action="store_true", help="torch.compile both models")
    p.add_argument("--device", default="auto", help="auto | cuda | cpu")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    p.add_argument("--bf16-vs-fp32", action="store_true",
                   help="time CQA-Face in fp32 against CQA-Face under bf16 autocast + channels_last (CPU bf16)")
    args = p.parse_args(argv)
    if args.bf16_vs_fp32:
        return precision_ratio(args)
    device = torch.device(("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU ({torch.get_num_threads()} threads)"
    torch.manual_seed(0)
    nets = {"cqa": CQANet(args.stem, args.num_classes), "bare": BareNet(args.stem, args.num_classes)}
    rows = measure(nets, device, args.batch_size, args.steps, args.warmup, args.num_classes, args.compile)
    ratio = rows["cqa"]["images_per_s"] / rows["bare"]["images_per_s"]
    result = {"device": name, "torch": torch.__version__, "stem": args.stem, "batch_size": args.batch_size,
              "steps": args.steps, "compile": args.compile, "precision": "bf16" if device.type == "cuda" else "fp32",
              **rows, "cqa_over_bare_throughput": ratio}
    if args.json:
        print(json.dumps(result))
        return 0
    print(f"device: {name}   torch {torch.__version__}   stem {args.stem}   batch {args.batch_size}   "
          f"{result['precision']}   compile={args.compile}")
    print(f"{'model':<28}{'images/s':>10}{'ms/step':>10}{'GFLOP/img (f+b)':>17}{'MFU':>8}{'peak GiB':>10}")
    for label, title in (("cqa", f"CQA-Face {args.stem} (b=4)"), ("bare", f"iResNet-{args.stem} + CosFace")):
        r = rows[label]
        mfu = f"{100 * r['mfu']:.1f}%" if r["mfu"] is not None else "n/a"
        mem = f"{r['peak_memory_gib']:.2f}" if r["peak_memory_gib"] is not None else "n/a"
        print(f"{title:<28}{r['images_per_s']:>10.1f}{r['step_ms']:>10.1f}{r['gflops_per_image_train']:>17.2f}"
              f"{mfu:>8}{mem:>10}")
    print(f"CQA-Face / bare throughput: {ratio:.3f}")
    print(json.dumps(result))
    return 0


def precision_ratio(args: argparse.Namespace) -> int:
    """CQA-Face fp32 (NCHW) vs bf16 autocast + channels_last, same init, same run, alternating rounds."""
    device = torch.device("cpu" if args.device in ("auto", "cpu") else args.device)
    torch.manual_seed(0)
    fp32 = CQANet(args.stem, args.num_classes)
    bf16 = CQANet(args.stem, args.num_classes)
    bf16.load_state_dict(fp32.state_dict())
    rows = measure({"fp32": fp32, "bf16": bf16}, device, args.batch_size, args.steps, args.warmup,
                   args.num_classes, args.compile, bf16={"fp32": False, "bf16": True})
    ratio = rows["bf16"]["images_per_s"] / rows["fp32"]["images_per_s"]
    print(f"device: {device} ({torch.get_num_threads()} threads)   torch {torch.__version__}   stem {args.stem}   "
          f"batch {args.batch_size}")
    for k in ("fp32", "bf16"):
        print(f"CQA-Face {args.stem} {k:<5}{rows[k]['images_per_s']:>10.1f} images/s{rows[k]['step_ms']:>10.1f} ms/step")
    print(f"bf16 / fp32 throughput: {ratio:.3f}")
    print(json.dumps({"device": str(device), "threads": torch.get_num_threads(), "stem": args.stem,
                      "batch_size": args.batch_size, **rows, "bf16_over_fp32": ratio}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
