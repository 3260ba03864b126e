"""CPU latency of the exported ONNX graph (onnxruntime) vs PyTorch eager, measured in one run.

    PYTHONPATH=. .venv/bin/python benchmarks/onnx_latency.py --threads 2 --repeats 30

Both runtimes get the same intra-op thread count and the same inputs; calls are interleaved
(ORT, torch, ORT, torch, ...) so a busy machine slows both alike, and the median of the repeats
is reported per batch size, with the ratio torch / ORT (> 1: onnxruntime is faster). The model
is the bundled default (``--checkpoint`` for another); the graph is exported to a temporary
file first. Needs the ``export`` extra (onnx, onnxruntime).
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch


def race(fns: dict[str, Callable[[], object]], repeats: int, warmup: int = 3) -> dict[str, float]:
    """Median seconds of each function, calls interleaved, after ``warmup`` calls each."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    return {k: statistics.median(v) for k, v in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", default=None, help="model (default: the bundled default model)")
    parser.add_argument("--threads", type=int, default=2, help="intra-op threads for both runtimes (default 2)")
    parser.add_argument("--batches", default="1,8,32", help="comma-separated batch sizes (default 1,8,32)")
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--json", action="store_true", help="print the raw numbers as JSON too")
    args = parser.parse_args()

    from cqa_core.checkpoint import resolve_model
    from cqa_core.export import export_onnx, onnx_session, parity, run_onnx

    torch.set_num_threads(args.threads)
    model, label, _ = resolve_model(args.checkpoint, "cpu")
    path = export_onnx(model, Path(tempfile.mkdtemp()) / "cqa.onnx")
    session = onnx_session(path, threads=args.threads)
    import onnxruntime

    rows = []
    for bsz in (int(b) for b in args.batches.split(",")):
        x = torch.randn(bsz, 3, 112, 112, generator=torch.Generator().manual_seed(bsz))  # (B, 3, 112, 112)
        xn = x.numpy()

        def eager(x: torch.Tensor = x) -> None:
            with torch.inference_mode():
                model(x)

        def ort(xn=xn) -> None:
            run_onnx(session, xn)

        t = race({"onnxruntime": ort, "torch": eager}, args.repeats)
        diff = max(parity(model, session, x).values())
        rows.append({"batch": bsz, "torch_ms": 1e3 * t["torch"], "ort_ms": 1e3 * t["onnxruntime"],
                     "ratio_torch_over_ort": t["torch"] / t["onnxruntime"], "max_abs_diff": diff})

    print(f"model: {label}; torch {torch.__version__} eager vs onnxruntime {onnxruntime.__version__} "
          f"CPUExecutionProvider; {args.threads} thread(s); median of {args.repeats}")
    print(f"{'batch':>6}{'torch ms':>11}{'ORT ms':>10}{'torch/ORT':>11}{'ms/face ORT':>13}{'max |diff|':>12}")
    for r in rows:
        print(f"{r['batch']:>6}{r['torch_ms']:>11.2f}{r['ort_ms']:>10.2f}{r['ratio_torch_over_ort']:>10.2f}x"
              f"{r['ort_ms'] / r['batch']:>13.2f}{r['max_abs_diff']:>12.1e}")
    if args.json:
        print(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
