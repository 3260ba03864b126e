"""``cqa audit``: per-face QAN quality of a whole dataset, as data-parallel, resumable inference.

One Parquet row per face, in dataset order (:mod:`cqa_core.evaluation.audit_source` names the faces):
``index, path, label, identity, overall_quality, quality_0 .. quality_{b-1}, cal_penalty,
embedding_norm, align_method``; the readings are those of :mod:`cqa_core.evaluation.face_scores`. The
file's metadata (key ``cqa_audit``) holds the source kind and root, the model and its weights'
fingerprint, so the dashboard can show any face without recomputing (reading a finished file, torch-free,
is :mod:`cqa_core.evaluation.audit_table`).

Work is cut into chunks of ``chunk`` consecutive faces whatever the number of processes, and a
chunk's batches are the same slices everywhere, so every face goes through the model in the same
batch under 1 or N processes and the file is the same. Under ``torchrun`` (gloo on CPU, nccl on
CUDA; only barriers are exchanged) the chunks still to do are dealt round-robin to the ranks.
Each finished chunk is written to ``OUT.parts/part_NNNNNN.parquet`` (temporary name, then
renamed: a kill never leaves half a part). A later run with the same dataset, model and chunk size
skips the parts that exist, so a killed audit resumes, under any number of processes. When all
parts exist, rank 0 joins them into OUT (written atomically) and removes OUT.parts.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from cqa_core.evaluation.audit_source import AuditSource
from cqa_core.evaluation.audit_table import META_KEY, pyarrow
from cqa_core.evaluation.face_scores import FaceScores, scores_of_output
from cqa_core.preprocess import normalize
from cqa_core.training.distributed import barrier, setup


def fingerprint(model: torch.nn.Module) -> str:
    """sha1 of the model's state dict (names, dtypes, shapes, bytes): which weights made an audit."""
    h = hashlib.sha1()
    for name, t in model.state_dict().items():
        h.update(f"{name}:{t.dtype}:{tuple(t.shape)}".encode())
        h.update(t.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def chunks(n: int, size: int) -> list[tuple[int, int]]:
    """[start, stop) of each chunk of ``size`` consecutive faces out of ``n``."""
    if size < 1:
        raise ValueError(f"--chunk must be >= 1, got {size}")
    return [(s, min(s + size, n)) for s in range(0, n, size)]


def _write_atomic(table: Any, path: Path) -> None:
    _, pq = pyarrow()
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    pq.write_table(table, str(tmp))
    os.replace(tmp, path)


def _part_table(src: AuditSource, start: int, scores: Any) -> Any:
    pa, _ = pyarrow()
    idx = range(start, start + len(scores.norm))
    cols: dict[str, Any] = {
        "index": pa.array(list(idx), pa.int64()),
        "path": [src.paths[i] for i in idx],
        "label": pa.array([src.labels[i] for i in idx], pa.int64()),
        "identity": [src.identities[i] for i in idx],
        "overall_quality": pa.array(scores.overall.astype(np.float32)),
    }
    for b in range(scores.quality.shape[1]):
        cols[f"quality_{b}"] = pa.array(scores.quality[:, b].astype(np.float32))
    cols["cal_penalty"] = pa.array(scores.cal.astype(np.float32))
    cols["embedding_norm"] = pa.array(scores.norm.astype(np.float32))
    cols["align_method"] = [src.methods[i] for i in idx]
    return pa.table(cols)


def _manifest(parts: Path, want: dict, rank: int, restart: bool) -> None:
    """Rank 0 makes ``parts`` and its manifest; every rank then checks it is this run's."""
    path = parts / "manifest.json"
    if rank == 0:
        if restart and parts.exists():
            shutil.rmtree(parts)
        parts.mkdir(parents=True, exist_ok=True)
        if not path.exists():
            path.write_text(json.dumps(want, indent=2))
    barrier()
    have = json.loads(path.read_text())
    if have != want:
        diff = sorted(k for k in want if have.get(k) != want[k])
        raise ValueError(f"{parts} holds a partial audit of another run (differs in {', '.join(diff)}); "
                         "pass --restart to discard it")


def run_audit(src: AuditSource, out: str | os.PathLike, model: torch.nn.Module, model_label: str = "model",
              chunk: int = 1024, batch_size: int = 64, workers: int = 0, device: str = "auto",
              restart: bool = False, progress: bool = True,
              on_chunk: Callable[[int], None] | None = None) -> dict[str, Any] | None:
    """Audit every face of ``src`` into the Parquet file ``out`` (see the module docstring).

    Args:
        on_chunk: called with each chunk's number after its part is written (progress hooks;
            an exception there stops the run like a kill would).

    Returns:
        On rank 0 a summary dict (faces, chunks, done before, seconds, faces/s); None elsewhere.
    """
    pyarrow()  # fail before any work when it is missing
    info = setup(device)
    out = Path(out)
    parts = Path(str(out) + ".parts")
    model = model.to(info.device).eval()
    plan = chunks(len(src), chunk)
    want = {"kind": src.kind, "root": src.root, "faces": len(src), "chunk": chunk, "batch_size": batch_size,
            "model": fingerprint(model)}
    _manifest(parts, want, info.rank, restart)
    done = {c for c in range(len(plan)) if (parts / f"part_{c:06d}.parquet").exists()}
    barrier()  # every rank has listed the parts before any rank writes one
    todo = [c for c in range(len(plan)) if c not in done]
    mine = todo[info.rank::info.world_size]
    batches = [(c, list(range(s, min(s + batch_size, plan[c][1])))) for c in mine
               for s in range(plan[c][0], plan[c][1], batch_size)]
    loader = torch.utils.data.DataLoader(src.dataset, batch_sampler=[b for _, b in batches], num_workers=workers)
    t0, pending = time.perf_counter(), []
    bar = tqdm(total=sum(len(b) for _, b in batches), desc=f"audit rank {info.rank}", unit="face",
               disable=not progress)
    with torch.inference_mode():
        for (c, idx), (x, _) in zip(batches, loader, strict=True):
            pending.append(scores_of_output(model(normalize(x.to(info.device)))))  # x (B, 3, 112, 112) uint8
            bar.update(len(idx))
            if idx[-1] == plan[c][1] - 1:  # the chunk's last batch
                _write_atomic(_part_table(src, plan[c][0], FaceScores.concat(pending)), parts / f"part_{c:06d}.parquet")
                pending = []
                if on_chunk is not None:
                    on_chunk(c)
    bar.close()
    barrier()
    if info.rank != 0:
        return None
    _join(parts, out, len(plan), {**want, "model_label": model_label, "branches": _branches(model)})
    seconds = time.perf_counter() - t0
    return {"faces": len(src), "chunks": len(plan), "chunks_done_before": len(done), "processes": info.world_size,
            "seconds": round(seconds, 2), "faces_per_s": round((len(src) - sum(
                plan[c][1] - plan[c][0] for c in done)) / max(seconds, 1e-9), 1), "out": str(out)}


def _branches(model: torch.nn.Module) -> int | None:
    cfg = getattr(model, "config", None)
    return getattr(cfg, "branches", None)


def _join(parts: Path, out: Path, n_chunks: int, meta: dict) -> None:
    pa, pq = pyarrow()
    files = [parts / f"part_{c:06d}.parquet" for c in range(n_chunks)]
    missing = [f.name for f in files if not f.exists()]
    if missing:
        raise RuntimeError(f"audit parts missing after every rank finished: {missing[:3]}")
    table = pa.concat_tables([pq.read_table(str(f)) for f in files])
    table = table.replace_schema_metadata({META_KEY: json.dumps(meta, sort_keys=True).encode()})
    out.parent.mkdir(parents=True, exist_ok=True)
    _write_atomic(table, out)
    shutil.rmtree(parts)
