"""Training data: datasets, a deterministic world-size-invariant batch sampler, the loader.

Datasets hand out ``(uint8 (3, 112, 112) RGB, int label)``; batches stay uint8 through pinned
memory to the device, where the trainer normalises and flips them (cheap host, fed GPU).

Order. ``GlobalBatchSampler`` plays DistributedSampler's role with one extra guarantee: the
epoch's permutation depends only on (seed, epoch), it is cut into GLOBAL batches of
``batch_size`` images, and global batch g is split into world_size x grad_accum micro-batches,
micro-batch slot = rank * grad_accum + accumulation index. So one process with grad_accum = 2
sees exactly the images two DDP processes see in one step, and a resumed run restarts at
global batch g with no drift. Workers only decode (no randomness), so any worker count gives
the same batches. Training degradations (``config.augment``) are random but keyed: the
sampler hands each image a key derived from (seed, epoch, index), so they keep both guarantees.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from cqa_core.config import TrainConfig
from cqa_core.data.augment import AugmentedFaces
from cqa_core.data.datasets import FaceFolder, ensure_aligned
from cqa_core.data.recordio import RecordIODataset
from cqa_core.training import distill, mixes

IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".bmp", ".webp")


class GlobalBatchSampler(Sampler[list[int]]):
    """Yields this rank's micro-batches (lists of indices), epoch by epoch, from global batch ``start``."""

    def __init__(self, n: int, batch_size: int, world_size: int, rank: int, grad_accum: int, seed: int,
                 keyed: bool = False) -> None:
        slots = world_size * grad_accum
        if batch_size % slots:
            raise ValueError(
                f"batch_size {batch_size} must be divisible by world_size x grad_accum = {slots}"
            )
        if n < batch_size:
            raise ValueError(f"dataset has {n} images, fewer than one global batch of {batch_size}")
        self.n, self.batch_size, self.rank, self.accum, self.seed = n, batch_size, rank, grad_accum, seed
        self.micro = batch_size // slots
        self.keyed = keyed  # yield (index, key) pairs: key seeds that item's augmentation
        self.epoch = 0
        self.start = 0  # first global batch of the epoch to yield (resume)

    @property
    def steps_per_epoch(self) -> int:
        return self.n // self.batch_size  # drop the last partial global batch

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        self.epoch, self.start = epoch, start

    def __len__(self) -> int:
        return (self.steps_per_epoch - self.start) * self.accum

    def __iter__(self) -> Iterator[list[int]]:
        gen = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        perm = torch.randperm(self.n, generator=gen).tolist()
        for g in range(self.start, self.steps_per_epoch):
            base = g * self.batch_size
            for a in range(self.accum):
                slot = self.rank * self.accum + a
                batch = perm[base + slot * self.micro : base + (slot + 1) * self.micro]
                if self.keyed:  # a key unique to (seed, epoch, image): same views for any worker count
                    batch = [(i, (self.seed * 100_003 + self.epoch) * self.n + i) for i in batch]
                yield batch


def build_dataset(config: TrainConfig, cache_root: Path | None = None) -> Dataset:
    """The training set the config names, wrapped with degradations / teacher targets when asked.

    With ``augment`` or ``distill`` on, items are ``(image, label, extras)`` and the sampler must
    be keyed (:func:`needs_keys`); see :class:`cqa_core.data.augment.AugmentedFaces`.
    """
    dataset = _base_dataset(config, cache_root)
    if not needs_keys(config):
        return dataset

    targets = mixed = None
    d = config.distill
    if d.teacher is not None:
        targets, mean = distill.prepare(dataset, d.teacher, d.batch_size, config.progress, with_mean=True)
        if d.mixes:
            path = mixes.compute_mixes(dataset.root, d.teacher, d.mixes, d.mix_seed, d.batch_size, config.progress)
            mixed = mixes.load_mixes(path, mean)
    return AugmentedFaces(dataset, config.augment, targets, mixes=mixed)


def needs_keys(config: TrainConfig) -> bool:
    """Whether the run's items carry extras (degradations or teacher targets)."""
    return config.augment.enabled or config.distill.teacher is not None


def _base_dataset(config: TrainConfig, cache_root: Path | None) -> Dataset:
    """An aligned folder (aligned first if data.align) or RecordIO."""
    data = config.data
    root = Path(data.root).expanduser()
    if data.format == "recordio":
        return RecordIODataset(str(root), decoder=_decoder())
    if data.align:
        root = Path(ensure_aligned(root, cache_root=cache_root))  # cache_root: Settings.cache_root (None: default)
    if not root.is_dir():
        raise FileNotFoundError(f"training data folder not found: {root} (set data_root=...)")

    return FaceFolder(root, decoder=_decoder())


def _decoder() -> str:
    """OpenCV (fastest) when installed, else PIL."""
    try:
        import cv2  # noqa: F401
    except ImportError:
        return "pil"
    return "cv2"


def num_classes_of(dataset: Dataset) -> int:
    """Class count of a dataset (``num_classes`` or ``len(classes)``)."""
    if hasattr(dataset, "num_classes"):
        return int(dataset.num_classes)
    if hasattr(dataset, "classes"):
        return len(dataset.classes)
    raise ValueError("dataset must expose num_classes or classes")


def build_loader(dataset: Dataset, sampler: GlobalBatchSampler, config: TrainConfig, device: torch.device) -> DataLoader:
    """DataLoader over ``sampler``: uint8 batches, pinned on CUDA, persistent workers when > 0."""
    workers = config.data.num_workers
    return DataLoader(
        dataset,
        batch_sampler=sampler,
        num_workers=workers,
        pin_memory=device.type == "cuda",
        persistent_workers=workers > 0,
        prefetch_factor=4 if workers > 0 else None,
        # its own generator: DataLoader draws a worker base seed per iter(), which must not
        # advance the global torch RNG (a resumed run creates one iterator more than a straight run)
        generator=torch.Generator().manual_seed(config.seed),
    )
