"""Partial FC: a margin head that scores each batch against a sample of the class centres.

After insightface's ``PartialFC_V2`` (An et al., "Partial FC", 2021): with hundreds of thousands
of identities the (B, K) logits and the K x D softmax gradient dominate a step. Each step keeps
every class present in the (global) batch plus random negatives, and applies the usual CosFace /
ArcFace margin and softmax over that subset only.

Sharding (``world_size`` > 1): rank r holds the centres of classes ``[r * L, r * L + L)`` with
``L = ceil(K / world_size)`` (the last shard is padded; padded centres are never sampled while
real ones remain and score -inf when they are), so a rank stores ``L * D`` floats instead of
``K * D``. Embeddings are all-gathered (autograd: gradients summed back to their rank), each
rank scores the whole global batch against ``S`` centres sampled from its own shard, and an
all-to-all hands every rank the (B, world_size * S) logits of its own rows. The caller's
cross-entropy is therefore unchanged; centre gradients are scaled by 1 / world_size so that they
match DDP's averaged loss. Centre parameters are rank-local: keep them out of DDP (see
:func:`cqa_core.training.distributed.ddp_ignore_rank_local`).

Sampling is a pure tensor function of (seed, step, labels): per-class 31-bit hash scores keyed
on ``seed * 1_000_003 + step`` (the same on CPU and GPU, on every rank and after a resume),
positives lifted above every negative, ``topk`` of a fixed size ``S = min(L, max(ceil(rate *
L), N))`` (N = global batch, so all positives always fit). ``step`` is a tensor buffer, so
``torch.compile`` neither guards on its value nor breaks the graph (issue 14).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from cqa_core.model.heads import MarginHead, create_head
from cqa_core.training import distributed as D

_M31 = 0x7FFFFFFF  # products of two values below 2**31 fit int64: no overflow anywhere


def hash_scores(ids: torch.Tensor, key: torch.Tensor) -> torch.Tensor:
    """Pseudo-random 31-bit integer per id (int64), a pure function of (id, key)."""
    x = (ids + key * 0x2545F491) & _M31  # (L,)
    x = x ^ (x >> 15)  # (L,)
    x = (x * 0x2C1B3C6D) & _M31  # (L,)
    x = x ^ (x >> 12)  # (L,)
    x = (x * 0x297A2D39) & _M31  # (L,)
    return x ^ (x >> 15)  # (L,)


def shard_range(num_classes: int, rank: int, world_size: int) -> tuple[int, int]:
    """(first class, rows) of ``rank``'s shard: rows = ceil(K / world_size) on every rank."""
    rows = math.ceil(num_classes / world_size)
    return rank * rows, rows


class PartialFC(nn.Module):
    """Sampled-centre wrapper around a margin head, optionally sharded over ranks.

    Args:
        head: margin head whose ``weight`` (L, D) holds this rank's centres (all K when unsharded).
        rate: fraction of centres used per step (1.0 = all: identical to the plain head).
        seed: base seed of the negative sampling.
        num_classes: K; defaults to the head's rows (unsharded).
        rank: this process's rank (its shard is classes ``[rank * L, rank * L + L)``).
        world_size: number of shards; > 1 needs an initialised process group.
    """

    def __init__(self, head: MarginHead, rate: float, seed: int = 0, num_classes: int | None = None,
                 rank: int = 0, world_size: int = 1) -> None:
        super().__init__()
        self.head, self.rate, self.seed = head, rate, seed
        self.num_classes = head.weight.shape[0] if num_classes is None else num_classes
        self.rank, self.world_size = rank, world_size
        self.first, rows = shard_range(self.num_classes, rank, world_size)
        if rows != head.weight.shape[0]:
            raise ValueError(f"rank {rank}/{world_size} of {self.num_classes} classes holds {rows} centres, "
                             f"the head has {head.weight.shape[0]}")
        if world_size > 1:
            head.weight.rank_local = True  # read by distributed.ddp_ignore_rank_local / clip_grad_norm
        self.register_buffer("_step", torch.zeros((), dtype=torch.long), persistent=False)

    @property
    def step(self) -> int:
        return int(self._step)

    @step.setter
    def step(self, value: int) -> None:
        """The trainer sets this before each forward; written in place (no recompile)."""
        self._step.fill_(value)

    @property
    def weight(self) -> nn.Parameter:
        return self.head.weight

    def sample_size(self, rows: int) -> int:
        """Centres sampled per rank for a global batch of ``rows`` labels (static per shape)."""
        local = self.head.weight.shape[0]
        return min(local, max(math.ceil(self.rate * local), rows))

    def sample(self, labels: torch.Tensor, all_labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Shard-local centre subset (S,) holding every label of ``all_labels`` in this shard, and
        ``labels`` remapped into it (-1 where a label lives in another shard)."""
        rows = self.head.weight.shape[0]
        ids = torch.arange(rows, device=labels.device)  # (L,) local ids
        local = all_labels - self.first  # (N,)
        inside = (local >= 0) & (local < rows)  # (N,)
        slot = torch.where(inside, local, rows)  # (N,) other shards' labels go to a spare slot
        positive = torch.zeros(rows + 1, dtype=torch.bool, device=labels.device)  # (L + 1,)
        positive = positive.index_put((slot,), torch.ones_like(inside))[:rows]  # (L,)
        key = (self._step + self.seed * 1_000_003) & _M31  # () int64
        score = hash_scores(ids + self.first, key) * rows + ids  # (L,) distinct
        score = torch.where(positive, score + (rows << 32), score)  # (L,) positives on top
        score = torch.where(ids + self.first < self.num_classes, score, -1 - ids)  # (L,) padding last
        index = torch.topk(score, self.sample_size(all_labels.numel()), sorted=False).indices.sort().values  # (S,)
        mine = labels - self.first  # (B,)
        pos = torch.searchsorted(index, mine.clamp(0, rows - 1))  # (B,)
        return index, torch.where((mine >= 0) & (mine < rows), pos, -1)  # (S,), (B,)

    def scores(self, embedding: torch.Tensor, index: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Scaled margin logits (N, S) of ``embedding`` against centres ``index``; target -1 = no margin."""
        w = self.head.weight[index]  # (S, D)
        if self.world_size > 1:
            w = D.scale_grad(w, 1.0 / self.world_size)  # (S, D) grads match the rank-averaged loss
        cos = torch.nn.functional.linear(
            torch.nn.functional.normalize(embedding.float()), torch.nn.functional.normalize(w.float())
        )  # (N, S)
        has = (target >= 0)[:, None]  # (N, 1)
        logits = torch.where(has, self.head.apply_margin(cos, target.clamp_min(0)), cos) * self.head.scale  # (N, S)
        if self.first + self.head.weight.shape[0] > self.num_classes:  # a padded shard
            real = (index + self.first < self.num_classes)[None]  # (1, S)
            logits = logits.masked_fill(~real, float("-inf"))  # (N, S)
        return logits

    def forward(
        self, embedding: torch.Tensor, labels: torch.Tensor | None = None, all_labels: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Margin logits (B, world_size * S) over the sampled centres and the labels (B,) remapped into them.

        Args:
            embedding: this rank's embeddings (B, D).
            labels: their classes (B,); None = inference: plain scaled cosines of the local head.
            all_labels: the global batch's classes (world_size * B,), rank-major (``all_gather``).
        """
        if labels is None:
            return self.head(embedding), labels
        if self.world_size == 1:
            index, target = self.sample(labels, labels if all_labels is None else all_labels)  # (S,), (B,)
            return self.scores(embedding, index, target), target
        if all_labels is None:
            all_labels = D.all_gather_cat(labels)  # (W * B,)
        b, s = labels.shape[0], self.sample_size(all_labels.numel())
        index, target = self.sample(all_labels, all_labels)  # (S,), (W * B,)
        logits = self.scores(D.all_gather_grad(embedding), index, target)  # (W * B, S)
        mine = D.all_to_all_grad(logits.view(self.world_size, b, s))  # (W, B, S): block q from shard q
        found = torch.where(target >= 0, target + self.rank * s, 0)  # (W * B,)
        found = D.all_reduce_sum(found)  # (W * B,) each label found in exactly one shard
        rows = slice(self.rank * b, self.rank * b + b)
        return mine.permute(1, 0, 2).reshape(b, self.world_size * s), found[rows]  # (B, W * S), (B,)


def create_partial_fc(name: str, embedding_size: int, num_classes: int, scale: float, margin: float,
                      rate: float, seed: int = 0, rank: int = 0, world_size: int = 1) -> PartialFC:
    """A PartialFC over a fresh ``cosface`` / ``arcface`` head holding this rank's shard.

    Unsharded (``world_size`` 1) the head draws from the global RNG as :func:`create_head` does;
    a shard draws its N(0, 0.01) centres from a generator keyed on (seed, rank), so ranks differ.
    """
    _, rows = shard_range(num_classes, rank, world_size)
    head = create_head(name, embedding_size, rows, scale, margin)
    if world_size > 1:
        gen = torch.Generator().manual_seed(seed * 1_000_003 + rank)
        with torch.no_grad():
            head.weight.normal_(0.0, 0.01, generator=gen)
    return PartialFC(head, rate, seed, num_classes, rank, world_size)


def memory_per_rank(num_classes: int, embedding_size: int, world_size: int, bytes_per_value: int = 4,
                    copies: int = 3) -> int:
    """Bytes of class centres one rank holds: ``copies * bytes * D * ceil(K / world_size)``.

    ``copies`` = 3 counts the weight, its gradient (dense, as ``weight[index]`` back-propagates into
    a zero-filled (L, D) tensor) and SGD's momentum buffer. Logits add ``4 * B * world_size * S``.
    """
    return copies * bytes_per_value * embedding_size * shard_range(num_classes, 0, world_size)[1]
