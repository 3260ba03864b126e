"""Sharded Partial FC over 2 gloo processes = unsharded Partial FC over the same centres (issue 14, item 3).

Global batch: 6 embeddings (3 per rank) with labels [0, 5, 10, 6, 3, 7]. The reference is one
process holding all K centres: mean cross-entropy over the 6 rows on the columns both shards
sampled. A rank's loss is the mean over its own 3 rows, so mean(rank losses) = reference loss;
after DDP's averaging the model sees grad / world_size, which must equal the reference gradient
of its embeddings; each shard's centre gradient must equal the reference rows of its classes.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from cqa_core.model import create_head
from cqa_core.training.partial_fc import PartialFC, memory_per_rank, shard_range

WORLD, B, D = 2, 3, 8
LABELS = torch.tensor([0, 5, 10, 6, 3, 7])  # rank 0: rows 0-2, rank 1: rows 3-5


def _inputs(k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The full centres (K, D) and the global batch's embeddings (W * B, D), the same in every process."""
    g = torch.Generator().manual_seed(k)
    return torch.randn(k, D, generator=g), torch.randn(WORLD * B, D, generator=g)  # (K, D), (W * B, D)


def _worker(rank: int, rdv: str, out: str, k: int, rate: float) -> None:
    import torch.distributed as dist

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{rdv}", rank=rank, world_size=WORLD)
    try:
        full, emb = _inputs(k)
        first, rows = shard_range(k, rank, WORLD)
        head = create_head("cosface", D, rows, 64.0, 0.35)
        with torch.no_grad():
            head.weight.zero_()
            head.weight[: max(min(rows, k - first), 0)] = full[first:first + rows]  # (L, D), padded with zeros
        pfc = PartialFC(head, rate, seed=5, num_classes=k, rank=rank, world_size=WORLD)
        pfc.step = 3
        mine = emb[rank * B:(rank + 1) * B].clone().requires_grad_(True)  # (B, D)
        logits, target = pfc(mine, LABELS[rank * B:(rank + 1) * B], LABELS)  # (B, W * S), (B,)
        loss = F.cross_entropy(logits, target)
        loss.backward()
        index, _ = pfc.sample(LABELS, LABELS)  # (S,)
        torch.save({"loss": loss.detach(), "logits": logits.detach(), "target": target, "emb_grad": mine.grad,
                    "weight_grad": head.weight.grad, "ids": index + first}, f"{out}/rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def _run(tmp_path: Path, k: int, rate: float) -> list[dict[str, torch.Tensor]]:
    import torch.multiprocessing as mp

    mp.spawn(_worker, args=(str(tmp_path / "rdv"), str(tmp_path), k, rate), nprocs=WORLD, join=True)
    return [torch.load(tmp_path / f"rank{r}.pt") for r in range(WORLD)]


@pytest.mark.parametrize(("k", "rate"), [(11, 1.0), (101, 0.2)])
def test_two_gloo_shards_match_unsharded(tmp_path: Path, k: int, rate: float) -> None:
    res = _run(tmp_path, k, rate)
    ids = torch.cat([r["ids"] for r in res])  # (W * S,) global ids, ascending: shard 0 then shard 1
    assert torch.equal(ids, ids.sort().values)
    real = ids < k  # the padded centre (id 11 of K = 11) is the only fake one
    full, emb = _inputs(k)
    e = emb.clone().requires_grad_(True)  # (W * B, D)
    ref = PartialFC(create_head("cosface", D, k, 64.0, 0.35), 1.0)
    with torch.no_grad():
        ref.head.weight.copy_(full)  # (K, D)
    all_logits, _ = ref(e, LABELS)  # (W * B, K) margins on the targets
    cols = ids[real]  # (S_real,)
    ref_logits = all_logits[:, cols]  # (W * B, S_real)
    ref_target = torch.searchsorted(cols, LABELS)  # (W * B,)
    ref_loss = F.cross_entropy(ref_logits, ref_target)
    ref_loss.backward()

    assert rate == 1.0 or cols.numel() < k  # the second case really samples
    assert set(LABELS.tolist()) <= set(cols.tolist())  # positives always kept
    for r, out in enumerate(res):
        rows = slice(r * B, (r + 1) * B)
        assert torch.isinf(out["logits"][:, ~real]).all()
        torch.testing.assert_close(out["logits"][:, real], ref_logits[rows].detach())
        assert torch.equal(ids[out["target"]], LABELS[rows])  # each target points at its class's column
        torch.testing.assert_close(out["emb_grad"] / WORLD, e.grad[rows])  # what DDP's average hands the model
        first, n = shard_range(k, r, WORLD)
        shard_grad = torch.zeros(n, D)  # (L, D) padded rows get no gradient
        shard_grad[: min(n, k - first)] = ref.head.weight.grad[first:first + n]
        torch.testing.assert_close(out["weight_grad"], shard_grad)
    torch.testing.assert_close((res[0]["loss"] + res[1]["loss"]) / 2, ref_loss.detach())


def test_memory_per_rank_formula() -> None:
    # 2M classes x 512 x fp32, weight + gradient + SGD momentum: 3 * 4 * 512 * ceil(K / W) bytes
    assert memory_per_rank(2_000_000, 512, 1) == 3 * 4 * 512 * 2_000_000  # 12.288 GB unsharded
    assert memory_per_rank(2_000_000, 512, 8) == 3 * 4 * 512 * 250_000  # 1.536 GB on each of 8 ranks
    assert memory_per_rank(11, 8, 2) == 3 * 4 * 8 * 6  # ceil(11 / 2) = 6 rows per rank


class _Net(torch.nn.Module):
    """A linear 'model' and a sharded Partial FC in one module, as TrainNet holds them."""

    def __init__(self, pfc: PartialFC) -> None:
        super().__init__()
        self.model, self.pfc = torch.nn.Linear(4, D), pfc

    def forward(self, x: torch.Tensor, labels: torch.Tensor, all_labels: torch.Tensor) -> torch.Tensor:
        logits, target = self.pfc(self.model(x), labels, all_labels)  # (B, W * S), (B,)
        return F.cross_entropy(logits, target)


def _ddp_worker(rank: int, rdv: str, out: str) -> None:
    import torch.distributed as dist

    from cqa_core.training.distributed import clip_grad_norm, ddp_ignore_rank_local
    from cqa_core.training.partial_fc import create_partial_fc

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{rdv}", rank=rank, world_size=WORLD)
    try:
        torch.manual_seed(rank)  # different model init per rank: DDP's broadcast must unify it
        net = _Net(create_partial_fc("cosface", D, 11, 64.0, 0.35, rate=1.0, seed=5, rank=rank, world_size=WORLD))
        init = net.pfc.weight.detach().clone()  # (6, D)
        ignored = ddp_ignore_rank_local(net)
        ddp = torch.nn.parallel.DistributedDataParallel(net)
        x = torch.randn(WORLD * B, 4, generator=torch.Generator().manual_seed(1))[rank * B:(rank + 1) * B]  # (B, 4)
        ddp(x, LABELS[rank * B:(rank + 1) * B], LABELS).backward()
        grads = {n: p.grad.clone() for n, p in net.named_parameters()}
        total = clip_grad_norm(list(net.parameters()), 1e9)
        torch.save({"ignored": ignored, "init": init, "shard": net.pfc.weight.detach(), "grads": grads,
                    "model_w": net.model.weight.detach(), "total": total}, f"{out}/ddp{rank}.pt")
    finally:
        dist.destroy_process_group()


def test_ddp_leaves_shards_alone_and_clips_by_one_global_norm(tmp_path: Path) -> None:
    import torch.multiprocessing as mp

    mp.spawn(_ddp_worker, args=(str(tmp_path / "rdv"), str(tmp_path)), nprocs=WORLD, join=True)
    r0, r1 = (torch.load(tmp_path / f"ddp{r}.pt") for r in range(WORLD))
    assert r0["ignored"] == ["pfc.head.weight"]
    assert torch.equal(r0["shard"], r0["init"]) and torch.equal(r1["shard"], r1["init"])  # not broadcast
    assert not torch.equal(r0["shard"], r1["shard"])  # each rank drew its own centres
    assert torch.equal(r0["model_w"], r1["model_w"])  # replicated weights were broadcast
    for name in ("model.weight", "model.bias"):  # replicated gradients all-reduced
        torch.testing.assert_close(r0["grads"][name], r1["grads"][name])
    g = r0["grads"]
    expect = (g["model.weight"].pow(2).sum() + g["model.bias"].pow(2).sum()
              + g["pfc.head.weight"].pow(2).sum() + r1["grads"]["pfc.head.weight"].pow(2).sum()).sqrt()
    torch.testing.assert_close(r0["total"], expect)
    torch.testing.assert_close(r1["total"], expect)
