"""Stem-feature cache: with a frozen stem, compute the stem output of every training face once.

With ``TrainConfig.freeze_stem`` the stem is a fixed function, so running it at every step (12.6
GFLOPs per image for an iResNet-50) repeats work. :func:`prepare` computes the stem output X of
every training face once: view 0 is the clean face, views 1..K (``cache_views``) are degraded by
the loader's own :class:`~cqa_core.data.augment.AugmentedFaces` with a key of (cache_seed, view,
face), and mirrored by a keyed coin when ``hflip`` is on. The cache folder holds

    features.npy    (N, V, C, h, w) float16   memory-mapped, V = 1 + K
    visibility.npy  (N, V, h, w)    float32   each view's visibility map, area-pooled to h x w
                                              (all the QAN target reads: ``losses.quality_targets``)
    labels.npy      (N,)            int64
    meta.json       what it was built from (:func:`fingerprint`) and its shape
    progress.json   faces written; replaced atomically after each chunk, so a killed build resumes

A cache built from other inputs (stem weights, data, alignment, augmentation, seed, views, stem)
is refused with one line naming what differs, until ``rebuild_cache`` (``cqa train
--rebuild-cache``) rebuilds it: nothing stale is used silently, and a run that reuses a complete
cache says so in one line (where it lives, its size, when it was built). Training reads
:class:`CachedFeatures`: the keyed sampler's key of (seed, epoch, face) picks one stored view, so a
run replays exactly under resume and for any worker count.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import sys
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset

from cqa_core.checkpoint import atomic_write
from cqa_core.config import AugmentConfig, TrainConfig
from cqa_core.data import cache_place
from cqa_core.data.align import ALIGN_VERSION
from cqa_core.data.augment import AugmentedFaces
from cqa_core.data.reuse import files_size, say_reused
from cqa_core.data.reuse import human_bytes as human
from cqa_core.preprocess import INPUT_SIZE, normalize
from cqa_core.training import distributed

FORMAT = 1  # bump when the stored layout or the recipe of the views changes
CHUNK = 32  # faces per write (their V views form one stem batch): the resume granularity
META, PROGRESS = "meta.json", "progress.json"


class StaleCache(ValueError):
    """The cache folder holds a cache built for other inputs (the message says which)."""


# -- what a cache is built from ----------------------------------------------------------------
def weights_hash(module: nn.Module) -> str:
    """sha256 of a module's state dict (names, dtypes, shapes, bytes): 16 hex digits."""
    h = hashlib.sha256()
    for name, t in sorted(module.state_dict().items()):
        t = t.detach().cpu().contiguous()
        h.update(f"{name} {t.dtype} {tuple(t.shape)}".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy())  # (bytes,) any dtype, bf16 included
    return h.hexdigest()[:16]


def data_identity(dataset: Dataset, config: TrainConfig) -> str:
    """Hash of which faces these are: each file of a folder set (path under its root, label,
    size), else the data root, format and length; plus the recipe of teacher-labelled mixes."""
    base = dataset.base if isinstance(dataset, AugmentedFaces) else dataset
    h = hashlib.sha256(f"{type(base).__name__} {len(dataset)}".encode())
    samples = getattr(base, "samples", None)
    if samples:
        root = Path(getattr(base, "root", "/"))
        for path, label in samples:
            p = Path(path)
            rel = p.relative_to(root) if p.is_relative_to(root) else p
            h.update(f"{rel.as_posix()} {label} {p.stat().st_size}\n".encode())
    else:
        h.update(f"{Path(config.data.root).expanduser().resolve()} {config.data.format}".encode())
    d = config.distill
    if d.mixes:
        h.update(f"mixes {d.teacher} {d.mixes} {d.mix_seed}".encode())
    return h.hexdigest()[:16]


def fingerprint(stem: nn.Module, dataset: Dataset, config: TrainConfig) -> dict[str, Any]:
    """What a cache holds; a cache serves a run only if the two fingerprints are equal."""
    doc = {
        "format": FORMAT,
        "stem": config.model.stem,
        "stem weights": weights_hash(stem),
        "data": data_identity(dataset, config),
        "faces": len(dataset),
        "alignment": f"aligned on first use (v{ALIGN_VERSION})" if config.data.align else "pre-aligned",
        "augmentation": {**asdict(config.augment), "hflip": config.hflip},
        "augmentation seed": config.cache_seed,
        "views": config.cache_views,
    }
    return json.loads(json.dumps(doc))  # tuples -> lists, as meta.json reads back


def differences(cached: dict[str, Any], wanted: dict[str, Any]) -> list[str]:
    """One phrase per differing entry, e.g. ``stem weights differ: cache a1b2.. vs model c3d4..``."""
    out = []
    for name, want in wanted.items():
        have = cached.get(name)
        if have == want:
            continue
        verb = "differ" if name.endswith("s") else "differs"
        if isinstance(have, dict) and isinstance(want, dict):
            parts = ", ".join(f"{k} {have.get(k)} vs {v}" for k, v in want.items() if have.get(k) != v)
            out.append(f"{name} {verb}: {parts} (cache vs run)")
        else:
            out.append(f"{name} {verb}: cache {have} vs {'model' if name == 'stem weights' else 'run'} {want}")
    return out


def cache_root(config: TrainConfig, root: Path | None = None) -> Path:
    """``cache_dir``, else ``<root>/features/<data folder>-<stem>`` (``root``: ``Settings.cache_root``,
    which ``cqa train`` passes and writes into ``cache_dir``; None: its default)."""
    if config.cache_dir:
        return Path(config.cache_dir).expanduser()
    return cache_place(root) / "features" / f"{Path(config.data.root).expanduser().name}-{config.model.stem}"


# -- building ------------------------------------------------------------------------------------
class FaceViews(Dataset):
    """Face i -> its V views: uint8 images (V, 3, 112, 112), uint8 visibility (V, 112, 112), label.

    View 0 is the clean face; view k >= 1 is the training set's own degradation keyed on
    (seed, k, i), mirrored (with its visibility) when ``hflip`` and a coin keyed the same way say so.
    """

    def __init__(self, dataset: Dataset, augment: AugmentConfig, views: int, seed: int, hflip: bool) -> None:
        self.degraded = dataset if isinstance(dataset, AugmentedFaces) else AugmentedFaces(dataset, augment)
        self.clean = AugmentedFaces(self.degraded.base, AugmentConfig(), mixes=self.degraded.mixes)
        self.views, self.seed, self.hflip = views, seed, hflip

    def __len__(self) -> int:
        return len(self.clean)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor, int]:
        image, label, extras = self.clean[(index, 0)]  # (3, 112, 112) uint8
        images, vis = [image], [extras["visibility"]]  # visibility (112, 112) uint8, all 255
        for k in range(1, self.views):
            key = (self.seed * 100_003 + k) * len(self) + index  # unique per (seed, view, face)
            image, _, extras = self.degraded[(index, key)]  # (3, 112, 112)
            v = extras["visibility"]  # (112, 112)
            if self.hflip and np.random.default_rng([self.seed, k, index]).random() < 0.5:
                image, v = image.flip(-1), v.flip(-1)  # (3, 112, 112), (112, 112)
            images.append(image)
            vis.append(v)
        return torch.stack(images), torch.stack(vis), label  # (V, 3, 112, 112), (V, 112, 112)


def build(stem: nn.Module, dataset: Dataset, config: TrainConfig, root: Path, wanted: dict[str, Any],
          device: torch.device, amp: bool = False, chunk: int = CHUNK,
          on_chunk: Callable[[int], None] | None = None) -> None:
    """Write (or finish writing) the cache at ``root``, ``chunk`` faces at a time.

    Args:
        stem: the frozen stem (run in eval mode, under bf16 autocast when ``amp``).
        wanted: :func:`fingerprint` of this run, stored in meta.json.
        on_chunk: called with the faces written after each chunk is on disk (progress, tests).

    Raises:
        OSError: the disk cannot hold what is left to write.
    """
    n, views = len(dataset), 1 + config.cache_views
    meta = _read_json(root / META)
    done = int((_read_json(root / PROGRESS) or {}).get("faces", 0)) if meta is not None else 0
    was_training = stem.training
    stem.eval()
    with torch.no_grad():
        probe = stem(torch.zeros(1, 3, INPUT_SIZE, INPUT_SIZE, device=device))  # (1, C, h, w)
    c, h, w = probe.shape[1:]
    feat_bytes, side_bytes = n * views * c * h * w * 2, n * (views * h * w * 4 + 8)
    print(f"feature cache: {n} faces x {views} views x {c} x {h} x {w} x 2 bytes = {human(feat_bytes)} "
          f"(+ {human(side_bytes)} visibility maps and labels) in {root}"
          + (f"; resuming at face {done}" if done else ""), file=sys.stderr, flush=True)
    root.mkdir(parents=True, exist_ok=True)
    need, free = (feat_bytes + side_bytes) * (n - done) // n, shutil.disk_usage(root).free
    if free < need:
        raise OSError(f"not enough disk for the feature cache in {root}: it needs {human(need)}, "
                      f"{human(free)} is free; free space, set cache_dir=... elsewhere or lower cache_views")
    mode = "w+" if meta is None else "r+"
    feats = np.lib.format.open_memmap(root / "features.npy", mode, np.float16, (n, views, c, h, w))
    vis_mm = np.lib.format.open_memmap(root / "visibility.npy", mode, np.float32, (n, views, h, w))
    labels = np.lib.format.open_memmap(root / "labels.npy", mode, np.int64, (n,))
    if meta is None:  # after the arrays exist: a meta.json always has its files
        _write_json(root / META, {"fingerprint": wanted, "shape": [n, views, c, h, w]})
    starts = range(done, n, chunk)
    faces = FaceViews(dataset, config.augment, views, config.cache_seed, config.hflip)
    loader = DataLoader(faces, batch_sampler=[list(range(s, min(s + chunk, n))) for s in starts],
                        num_workers=config.data.num_workers,
                        generator=torch.Generator().manual_seed(0))  # leaves the global RNG alone
    bar = _progress(n, done) if config.progress else None
    try:
        for start, (images, vis, label) in zip(starts, loader, strict=True):
            b = len(label)
            x = normalize(images.flatten(0, 1).to(device))  # (b*V, 3, 112, 112) in [-1, 1]
            with torch.no_grad(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
                out = stem(x)  # (b*V, C, h, w)
            feats[start:start + b] = out.float().reshape(b, views, c, h, w).half().cpu().numpy()
            pooled = F.adaptive_avg_pool2d(vis.flatten(0, 1)[:, None].float() / 255.0, (h, w))  # (b*V, 1, h, w)
            vis_mm[start:start + b] = pooled.reshape(b, views, h, w).numpy()
            labels[start:start + b] = label.numpy()
            for array in (feats, vis_mm, labels):
                array.flush()
            _write_json(root / PROGRESS, {"faces": start + b})  # only after the rows are on disk
            if bar is not None:
                bar.update(b)
            if on_chunk is not None:
                on_chunk(start + b)
    finally:
        stem.train(was_training)
        if bar is not None:
            bar.close()


def prepare(stem: nn.Module, dataset: Dataset, config: TrainConfig, device: torch.device,
            amp: bool = False, chunk: int = CHUNK,
            on_chunk: Callable[[int], None] | None = None) -> CachedFeatures:
    """The run's cache, ready to train on: reused if complete, resumed if half built, built if absent.

    Raises:
        StaleCache: the folder holds a cache of other inputs and ``rebuild_cache`` is off.
        OSError: the disk cannot hold the cache.
    """
    root = cache_root(config)
    wanted = fingerprint(stem, dataset, config)
    meta = _read_json(root / META)
    if meta is not None and meta.get("fingerprint") != wanted:
        if not config.rebuild_cache:
            raise StaleCache(f"feature cache {root} was built for other inputs: "
                             f"{'; '.join(differences(meta.get('fingerprint') or {}, wanted))}; "
                             "pass --rebuild-cache (--set rebuild_cache=true) to rebuild it")
        shutil.rmtree(root)
    if int((_read_json(root / PROGRESS) or {}).get("faces", 0)) < len(dataset) or not (root / META).is_file():
        build(stem, dataset, config, root, wanted, device, amp, chunk, on_chunk)
    else:
        say_reused_cache(root)
    return CachedFeatures(root, teacher_targets(dataset))


def say_reused_cache(root: Path) -> str | None:
    """The one line a run that reuses a complete cache prints: where, how big, built when."""
    faces, views = (_read_json(root / META) or {}).get("shape", [0, 0])[:2]
    size = files_size([root / f for f in ("features.npy", "visibility.npy", "labels.npy")])
    return say_reused("the stem-feature cache", root, [f"{faces:,} faces x {views} views", human(size)],
                      built=root / PROGRESS)


def teacher_targets(dataset: Dataset) -> torch.Tensor | None:
    """Distillation targets (N, D) in item order (faces, then mixes); None without a teacher."""
    if not isinstance(dataset, AugmentedFaces) or dataset.targets is None:
        return None
    mixes = [] if dataset.mixes is None else [dataset.mixes[1]]
    return torch.cat([dataset.targets, *mixes])  # (N, D)


# -- training ------------------------------------------------------------------------------------
class CachedFeatures(Dataset):
    """A built cache as a keyed training set: ``(index, key)`` -> (X (C, h, w) float16, label, extras).

    ``key`` (from ``GlobalBatchSampler(keyed=True)``: seed, epoch, index) picks which stored view
    this epoch sees. extras: ``visibility`` (h, w) float32 in [0, 1], and ``target`` (D,) when a
    teacher's targets are given.
    """

    def __init__(self, root: str | Path, targets: torch.Tensor | None = None) -> None:
        self.root, self.targets = Path(root), targets
        meta = _read_json(self.root / META)
        if meta is None:
            raise FileNotFoundError(f"no feature cache at {self.root}")
        self.faces, self.views = meta["shape"][:2]
        self.labels = np.load(self.root / "labels.npy")  # (N,) int64, small: in memory
        self._features: np.ndarray | None = None  # opened in each process that reads (loader workers)
        self._visibility: np.ndarray | None = None

    def __len__(self) -> int:
        return self.faces

    def __getitem__(self, item: tuple[int, int]) -> tuple[torch.Tensor, int, dict[str, torch.Tensor]]:
        index, key = item
        if self._features is None:
            self._features = np.load(self.root / "features.npy", mmap_mode="r")  # (N, V, C, h, w)
            self._visibility = np.load(self.root / "visibility.npy", mmap_mode="r")  # (N, V, h, w)
        view = int(np.random.default_rng(key).integers(self.views))
        x = torch.from_numpy(np.array(self._features[index, view]))  # (C, h, w) float16
        extras = {"visibility": torch.from_numpy(np.array(self._visibility[index, view]))}  # (h, w)
        if self.targets is not None:
            extras["target"] = self.targets[index]  # (D,)
        return x, int(self.labels[index]), extras


# -- helpers -------------------------------------------------------------------------------------
def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _write_json(path: Path, doc: dict[str, Any]) -> None:
    atomic_write(path, lambda p: Path(p).write_text(json.dumps(doc, indent=1)))


def _progress(total: int, initial: int) -> Any:
    from tqdm.auto import tqdm  # the trainer's bar library; only a build shows this bar

    return tqdm(total=total, initial=initial, desc="feature cache", unit="face", dynamic_ncols=True)


def prepare_on_ranks(stem: nn.Module, dataset: Any, config: Any, device: torch.device, amp: bool, dist: Any) -> CachedFeatures:
    """:func:`prepare` under DDP: rank 0 builds (or resumes) the cache while the others wait, then reuse it."""
    if dist.enabled and not dist.is_main:
        distributed.barrier()
    cache = prepare(stem, dataset, config, device, amp)
    if dist.enabled and dist.is_main:
        distributed.barrier()
    return cache
