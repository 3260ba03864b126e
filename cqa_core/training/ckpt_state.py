"""Resumable training checkpoints without pickles.

A checkpoint is a directory ``out_dir/checkpoints/step_NNNNNNNN/``:

    model.safetensors   weights + ModelConfig (``cqa_core.checkpoint.save_model``; loadable alone)
    head.safetensors    class centres of the margin head
    optim.safetensors   optimiser tensors (momentum buffers) + the torch / cuda RNG states
    state.json          step, epoch, position, param groups, numpy / python RNG, TrainConfig, metrics

It is built in ``.step_NNNNNNNN.tmp`` and renamed into place, so a directory that exists is
complete (``state.json`` is written last as well). Nothing is unpickled on resume.
"""

from __future__ import annotations

import json
import random
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from cqa_core.checkpoint import atomic_write, save_model

STEP_DIR = re.compile(r"^step_(\d{8})$")


def _optim_split(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """optimizer.state_dict() -> (tensors, JSON-able rest)."""
    sd = optimizer.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for idx, st in sd["state"].items():
        for key, value in st.items():
            if isinstance(value, torch.Tensor):
                tensors[f"optim.{idx}.{key}"] = value.detach().cpu().contiguous()
            elif value is not None:
                scalars.setdefault(str(idx), {})[key] = value
    return tensors, {"param_groups": sd["param_groups"], "scalars": scalars}


def _optim_join(tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> dict[str, Any]:
    state: dict[int, dict[str, Any]] = {}
    for name, t in tensors.items():
        if name.startswith("optim."):
            _, idx, key = name.split(".", 2)
            state.setdefault(int(idx), {})[key] = t
    for idx, st in meta["scalars"].items():
        state.setdefault(int(idx), {}).update(st)
    return {"state": state, "param_groups": meta["param_groups"]}


def rng_state() -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """All RNG states: tensors (torch, cuda) and JSON (numpy, python)."""
    tensors = {"rng.torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"rng.cuda.{i}"] = s
    py = random.getstate()
    meta: dict[str, Any] = {"python": [py[0], list(py[1]), py[2]], "numpy": None}
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    meta["numpy"] = [kind, keys.tolist(), pos, has_gauss, gauss]
    return tensors, meta


def set_rng_state(tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
    torch.set_rng_state(tensors["rng.torch"])
    cuda = [tensors[k] for k in sorted(k for k in tensors if k.startswith("rng.cuda."))]
    if cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(cuda[: torch.cuda.device_count()])
    if meta.get("numpy") is not None:
        kind, keys, pos, has_gauss, gauss = meta["numpy"]
        np.random.set_state((kind, np.array(keys, dtype=np.uint32), pos, has_gauss, gauss))
    version, state, gauss_next = meta["python"]
    random.setstate((version, tuple(state), gauss_next))


def save_training_state(
    ckpt_root: Path, step: int, model: torch.nn.Module, head: torch.nn.Module,
    optimizer: torch.optim.Optimizer, state: dict[str, Any],
) -> Path:
    """Write one complete checkpoint directory atomically and return its path."""
    final = ckpt_root / f"step_{step:08d}"
    tmp = ckpt_root / f".step_{step:08d}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    save_model(tmp / "model.safetensors", model)
    head_t = {k: v.detach().cpu().contiguous().clone() for k, v in head.state_dict().items()}
    atomic_write(tmp / "head.safetensors", lambda p: save_file(head_t, p))
    opt_t, opt_meta = _optim_split(optimizer)
    rng_t, rng_meta = rng_state()
    atomic_write(tmp / "optim.safetensors", lambda p: save_file({**opt_t, **rng_t}, p))
    doc = {**state, "step": step, "optimizer": opt_meta, "rng": rng_meta}
    atomic_write(tmp / "state.json", lambda p: Path(p).write_text(json.dumps(doc, indent=1)))
    if final.exists():
        shutil.rmtree(final)
    tmp.rename(final)
    return final


def load_training_state(path: Path, model: torch.nn.Module, head: torch.nn.Module,
                        optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    """Restore weights, head, optimiser and RNG from a checkpoint dir; return its state.json."""
    if any(getattr(p, "rank_local", False) for p in head.parameters()):
        raise NotImplementedError(
            "resuming a run with sharded Partial FC centres is not supported yet: checkpoints hold "
            "rank 0's shard only (issue 14); resume with partial_fc off or a single process")
    doc = json.loads((path / "state.json").read_text())
    model.load_state_dict(load_file(str(path / "model.safetensors")))
    head.load_state_dict(load_file(str(path / "head.safetensors")))
    tensors = load_file(str(path / "optim.safetensors"))
    optimizer.load_state_dict(_optim_join(tensors, doc["optimizer"]))
    match_param_layout(optimizer)
    set_rng_state(tensors, doc["rng"])
    return doc


def match_param_layout(optimizer: torch.optim.Optimizer) -> int:
    """Give every per-parameter optimiser tensor its parameter's strides; return how many moved.

    Buffers are saved contiguous (NCHW) and ``Optimizer.load_state_dict`` keeps that layout,
    while channels_last conv weights (and so their grads) are NHWC. The CUDA fused SGD / Adam
    kernels require params, grads and buffers to share sizes and strides (the CPU ones do not),
    so a GPU resume failed at its first step without this.
    """
    moved = 0
    for group in optimizer.param_groups:
        for p in group["params"]:
            st = optimizer.state.get(p, {})
            for key, value in st.items():
                if isinstance(value, torch.Tensor) and value.shape == p.shape and value.stride() != p.stride():
                    st[key] = torch.empty_like(p, dtype=value.dtype).copy_(value)  # p's shape and strides
                    moved += 1
    return moved


def list_checkpoints(ckpt_root: Path) -> list[Path]:
    """Complete checkpoint directories, oldest first."""
    if not ckpt_root.is_dir():
        return []
    found = [p for p in ckpt_root.iterdir() if STEP_DIR.match(p.name) and (p / "state.json").is_file()]
    return sorted(found, key=lambda p: p.name)


def resolve_resume(arg: str, out_dir: Path) -> Path:
    """``--resume`` value -> a checkpoint dir: '' = newest in out_dir; a run dir = its newest."""
    root = Path(arg).expanduser() if arg else out_dir
    if (root / "state.json").is_file():
        return root
    found = list_checkpoints(root / "checkpoints") or list_checkpoints(root)
    if not found:
        raise FileNotFoundError(f"no checkpoint to resume from under {root}")
    return found[-1]


def prune(ckpt_root: Path, keep_last: int, best: Path | None) -> None:
    """Delete all but the newest ``keep_last`` checkpoints, never ``best``."""
    found = list_checkpoints(ckpt_root)
    for p in found[: max(len(found) - keep_last, 0)]:
        if best is None or p.resolve() != best.resolve():
            shutil.rmtree(p, ignore_errors=True)
