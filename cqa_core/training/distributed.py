"""DDP plumbing for ``torchrun``: process group set-up, rank helpers, small collectives.

Under ``torchrun`` the environment carries RANK / WORLD_SIZE / LOCAL_RANK; the backend is nccl
on CUDA and gloo on CPU. Without those variables everything here is a no-op for one process.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistInfo:
    """Where this process sits: rank, world size, local rank and its device."""

    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def pick_device(name: str) -> torch.device:
    """``auto`` -> cuda when available, else cpu; anything else is passed to torch.device."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def setup(device_name: str = "auto") -> DistInfo:
    """Join the torchrun process group if launched by torchrun, and pick this rank's device."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    device = pick_device(device_name)
    if device.type == "cuda":
        device = torch.device("cuda", local if world > 1 else (device.index or 0))
        torch.cuda.set_device(device)
    if world > 1 and not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend=backend, device_id=device if device.type == "cuda" else None)
    return DistInfo(rank, world, local, device)


def teardown() -> None:
    """Leave the process group (safe to call when none was joined)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def all_reduce_sum(t: torch.Tensor) -> torch.Tensor:
    """Sum over processes in place (no-op for one process)."""
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t


def all_gather_cat(t: torch.Tensor) -> torch.Tensor:
    """Concatenate a same-shaped tensor from every process along dim 0."""
    if not (dist.is_available() and dist.is_initialized()):
        return t
    parts = [torch.empty_like(t) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, t.contiguous())
    return torch.cat(parts)


def barrier() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


# -- autograd collectives (sharded Partial FC) ---------------------------------------------------
class _AllGather(torch.autograd.Function):
    """Concatenate (B, ...) from every rank; the gradient of each block is summed back to its rank."""

    @staticmethod
    def forward(ctx, t: torch.Tensor) -> torch.Tensor:
        ctx.rank, ctx.rows = dist.get_rank(), t.shape[0]
        return all_gather_cat(t)  # (W * B, ...)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.contiguous()  # (W * B, ...) this rank's share of every block
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)  # (W * B, ...) summed over ranks
        return grad[ctx.rank * ctx.rows:(ctx.rank + 1) * ctx.rows]  # (B, ...)


class _AllToAll(torch.autograd.Function):
    """(W, ...) -> (W, ...): block q goes to rank q, block q of the result came from rank q.

    The exchange is its own inverse, so the backward pass is the same exchange of the gradient.
    """

    @staticmethod
    def forward(ctx, t: torch.Tensor) -> torch.Tensor:
        out = torch.empty_like(t, memory_format=torch.contiguous_format)  # (W, ...)
        dist.all_to_all_single(out, t.contiguous())
        return out

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        out = torch.empty_like(grad, memory_format=torch.contiguous_format)  # (W, ...)
        dist.all_to_all_single(out, grad.contiguous())
        return out


class _ScaleGrad(torch.autograd.Function):
    """Identity forward; the gradient is multiplied by ``scale``."""

    @staticmethod
    def forward(ctx, t: torch.Tensor, scale: float) -> torch.Tensor:
        ctx.scale = scale
        return t.view_as(t)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        return grad * ctx.scale, None


def all_gather_grad(t: torch.Tensor) -> torch.Tensor:
    """:func:`all_gather_cat` that back-propagates: (B, ...) -> (W * B, ...); identity alone."""
    if not (dist.is_available() and dist.is_initialized()):
        return t
    return _AllGather.apply(t)


def all_to_all_grad(t: torch.Tensor) -> torch.Tensor:
    """Differentiable all-to-all of (W, ...) blocks (equal sizes; gloo and nccl); identity alone."""
    if not (dist.is_available() and dist.is_initialized()):
        return t
    return _AllToAll.apply(t)


def scale_grad(t: torch.Tensor, scale: float) -> torch.Tensor:
    """``t`` unchanged, with its gradient multiplied by ``scale``."""
    return _ScaleGrad.apply(t, scale)


# -- rank-local parameters (Partial FC shards) ---------------------------------------------------
def rank_local_names(module: torch.nn.Module) -> list[str]:
    """Every name (duplicates too) of parameters marked ``rank_local`` (they differ per rank)."""
    return [n for n, p in module.named_parameters(remove_duplicate=False) if getattr(p, "rank_local", False)]


def ddp_ignore_rank_local(module: torch.nn.Module) -> list[str]:
    """Keep rank-local parameters out of DDP (no broadcast at start, no gradient all-reduce).

    Call on the module before wrapping it in ``DistributedDataParallel``; returns the names.
    """
    names = rank_local_names(module)
    if names:
        torch.nn.parallel.DistributedDataParallel._set_params_and_buffers_to_ignore_for_model(module, names)
    return names


def clip_grad_norm(params: list[torch.Tensor], max_norm: float) -> torch.Tensor:
    """``clip_grad_norm_`` whose norm counts rank-local gradients of every rank.

    Replicated gradients are equal on all ranks after DDP's all-reduce; a shard's gradient exists
    on one rank only. The global norm is sqrt(|g_replicated|^2 + sum over ranks |g_local|^2), so all
    ranks clip by the same factor and the replicas stay identical.
    """
    local = [p for p in params if getattr(p, "rank_local", False)]
    if not local or not (dist.is_available() and dist.is_initialized()):
        return torch.nn.utils.clip_grad_norm_(params, max_norm, foreach=True)
    shared = [p for p in params if not getattr(p, "rank_local", False)]
    norm = torch.nn.utils.get_total_norm([p.grad for p in shared], foreach=True)  # ()
    sq = torch.nn.utils.get_total_norm([p.grad for p in local], foreach=True).pow(2)  # ()
    total = (norm.pow(2) + all_reduce_sum(sq)).sqrt()  # ()
    torch.nn.utils.clip_grads_with_norm_(params, max_norm, total, foreach=True)
    return total
