"""Plain-python GPU smoke test for images without pytest: a few bf16 training steps, a resume.

    PYTHONPATH=. python benchmarks/gpu_smoke.py
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))


def _stub_pytest() -> None:
    """Let tests/test_train_gpu.py import where pytest is not installed (markers become no-ops)."""
    try:
        import pytest  # noqa: F401
    except ImportError:
        import types

        stub = types.ModuleType("pytest")
        mark = types.SimpleNamespace(gpu=None, skipif=lambda *a, **k: None, slow=None)
        stub.mark = mark
        sys.modules["pytest"] = stub


def main() -> int:
    if not torch.cuda.is_available():
        print("gpu_smoke: no CUDA device; nothing to check")
        return 0
    _stub_pytest()
    import test_train_gpu as t  # the same checks as the pytest GPU tests

    failures = 0
    checks = [t.test_bf16_channels_last_training_on_cuda, t.test_model_forward_stays_fp32_outside_the_trainer,
              t.test_compiled_training_step, t.test_resume_on_cuda_restores_cuda_rng,
              t.test_throughput_benchmark_reports_mfu]
    for check in checks:
        with tempfile.TemporaryDirectory() as tmp:
            try:
                args = (Path(tmp),) if check.__code__.co_argcount else ()
                check(*args)
                print(f"PASS {check.__name__}")
            except Exception as exc:  # report every check, then fail
                failures += 1
                print(f"FAIL {check.__name__}: {type(exc).__name__}: {exc}")
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
