"""``cqa audit`` under torchrun (gloo, CPU): 2 processes write the same file as 1, and a run killed
with SIGKILL resumes from its finished chunks (here under another process count) to that file.

Same file means byte for byte: every face goes through the model in the same batch whatever the
number of processes, and each process uses one thread (torchrun's default OMP_NUM_THREADS=1, set
for the single process too; another thread count changes float sums in the last bit).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("pyarrow", reason="cqa audit needs pyarrow (the audit extra)")

REPO = Path(__file__).resolve().parents[1]


def faces(root: Path, n: int) -> Path:
    rng = np.random.default_rng(0)
    for k in range(n):
        d = root / f"id{k % 7}"
        d.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.kron(rng.integers(0, 255, (14, 14, 3)), np.ones((8, 8, 1))).astype(np.uint8)).save(
            d / f"{k:04d}.png")
    return root


def audit(folder: Path, out: Path, procs: int, **popen) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    env.pop("CQA_CHECKPOINT", None)
    args = ["-m", "cqa_core.commands.audit", str(folder), "--out", str(out), "--chunk", "8", "--batch-size", "8",
            "--workers", "0", "--no-progress"]
    launch = ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(procs)] if procs > 1 else []
    return subprocess.Popen([sys.executable, *launch, *args], env=env, cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **popen)


def descendants(pid: int) -> list[int]:
    """pid and every process below it (torchrun starts its workers in sessions of their own)."""
    out = [pid]
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            kids = (task / "children").read_text().split()
        except OSError:  # the thread ended meanwhile
            continue
        for child in kids:
            out += descendants(int(child))
    return out


def finish(proc: subprocess.Popen) -> str:
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err[-3000:]
    return out


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="finds torchrun's workers through /proc (Linux)")
def test_two_processes_and_a_killed_run_give_the_one_process_file(tmp_path: Path) -> None:
    folder = faces(tmp_path / "faces", 1200)  # 150 chunks of 8: time to kill it midway
    finish(audit(folder, tmp_path / "one.parquet", 1))
    finish(audit(folder, tmp_path / "two.parquet", 2))
    one = (tmp_path / "one.parquet").read_bytes()
    assert (tmp_path / "two.parquet").read_bytes() == one

    out = tmp_path / "killed.parquet"
    parts = tmp_path / "killed.parquet.parts"
    proc = audit(folder, out, 2)
    deadline = time.monotonic() + 240
    while len(list(parts.glob("part_*.parquet"))) < 2:
        assert proc.poll() is None and time.monotonic() < deadline, "the run ended before it could be killed"
        time.sleep(0.01)
    for pid in descendants(proc.pid):  # the launcher and both workers, as a scheduler's kill would
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    proc.communicate(timeout=60)
    done = len(list(parts.glob("part_*.parquet")))
    assert not out.exists() and 2 <= done < 150 and not list(parts.glob(".*tmp"))
    log = finish(audit(folder, out, 1))
    assert f"({done} done before)" in log
    assert out.read_bytes() == one and not parts.exists()
