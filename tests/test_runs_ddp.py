"""``cqa eval --out`` under torchrun (gloo, CPU): two processes score their shares of the faces into shards of
the embedding cache, rank 0 writes the run; its numbers equal a single process's."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("duckdb", reason="runs need the runs extra")

REPO = Path(__file__).resolve().parents[1]


def record(out: Path, cache: Path, procs: int) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "CQA_CACHE": str(cache)}
    env.pop("CQA_CHECKPOINT", None)
    args = ["-m", "cqa_core.commands.eval", "--data", "lfw", "--limit", "40", "--align", "center", "--device", "cpu",
            "--out", str(out)]
    launch = ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(procs)] if procs > 1 else []
    return subprocess.run([sys.executable, *launch, *args], env=env, cwd=REPO, capture_output=True, text=True,
                          timeout=600)


@pytest.mark.slow
@pytest.mark.data
def test_two_processes_write_the_run_one_process_writes(tmp_path, lfw_root):
    one = record(tmp_path / "one", tmp_path / "cache1", 1)
    assert one.returncode == 0, one.stderr[-2000:]
    two = record(tmp_path / "two", tmp_path / "cache2", 2)
    assert two.returncode == 0, two.stderr[-2000:]
    assert two.stdout.count("wrote the run to") == 1  # rank 0 alone writes and prints
    a, b = (json.loads((tmp_path / k / "run.json").read_text()) for k in ("one", "two"))
    assert a["accuracy"] == b["accuracy"] and a["pairs_digest"] == b["pairs_digest"]
    assert a["fold_thresholds"] == pytest.approx(b["fold_thresholds"], abs=1e-4)
    ea, eb = (np.load(tmp_path / k / "embeddings.npy") for k in ("one", "two"))
    np.testing.assert_allclose(ea.astype(np.float32), eb.astype(np.float32), atol=2e-3)
    shards = list((tmp_path / "cache2").rglob("shard-*.npz"))
    assert len(shards) == 2  # one per process
    again = record(tmp_path / "three", tmp_path / "cache2", 2)  # every face is in the cache now
    assert again.returncode == 0, again.stderr[-2000:]
    assert json.loads((tmp_path / "three" / "run.json").read_text())["faces"]["scored"] == 0
