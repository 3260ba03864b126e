"""Evaluation data: the pair sets and identification sets ``cqa eval --data`` names.

Specs: ``lfw`` (LFW deep-funneled + official pairs.txt, aligned through
:func:`~cqa_core.data.datasets.ensure_aligned`, only the photos of the evaluated pairs with a
``limit`` (:func:`aligned_pair_photos`), or the fixed centre crop with ``align="center"``),
``celeba299`` (aligned CelebA subset; 10 identity-disjoint folds of 300 + 300 pairs drawn with a
fixed seed), ``bin:PATH`` (insightface .bin), ``pairs:ROOT:PAIRS_FILE`` (any LFW-format pair
list over photos under ROOT; photos not already 112 x 112 are aligned with MTCNN, centre fallback).
"""

from __future__ import annotations

import csv
import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from cqa_core.data.align import AlignedFace, align_image, center_affine, load_image, warp
from cqa_core.data.align_run import align_folder, face_row, out_name
from cqa_core.data.binset import load_bin
from cqa_core.data.datasets import (
    MARKER,
    FaceFolder,
    _earlier_landmarks,
    _FolderLock,
    aligned_dir,
    ensure_aligned,
    say_reused_crops,
)
from cqa_core.data.pairs import read_pairs, resolve_image, unique_images
from cqa_core.metrics import default_folds
from cqa_core.settings import Settings

log = logging.getLogger(__name__)


@dataclass
class PairSet:
    """Images plus pairs of indices into them (all arrays numpy).

    Attributes:
        name: the spec it came from.
        images: (M, 112, 112, 3) uint8 RGB aligned faces.
        index1: (N,) image index of each pair's first face; index2 likewise.
        issame: (N,) bool.
        folds: (N,) fold of each pair.
        sources: per image, its photo and its ``alignment.csv`` row (landmarks, affine), when the
            photos are known (``lfw``, ``pairs:`` over photos): a recognizer with another chip than
            the 112 x 112 ArcFace crop cuts its own from them (``recognizers.chips``). None otherwise.
    """

    name: str
    images: np.ndarray
    index1: np.ndarray
    index2: np.ndarray
    issame: np.ndarray
    folds: np.ndarray
    sources: list[tuple[Path, dict[str, str]]] | None = None


def subsample(n: int, limit: int | None) -> np.ndarray:
    """``limit`` indices spread evenly over ``range(n)`` (all when limit is None or >= n)."""
    if not limit or limit >= n:
        return np.arange(n)
    return np.unique(np.linspace(0, n - 1, limit).round().astype(int))


def _load_aligned(paths: list[Path], raw: bool, align: str) -> tuple[np.ndarray, list[tuple[Path, dict]] | None]:
    """Aligned crops (M, 112, 112, 3) of ``paths``; for raw photos also each photo's alignment row."""
    out = np.empty((len(paths), 112, 112, 3), np.uint8)
    rows: list[tuple[Path, dict]] = []
    for i, p in enumerate(tqdm(paths, desc="load faces", unit="img", leave=False)):
        img = load_image(p)
        if raw and img.shape[:2] != (112, 112):
            if align == "center":
                m = center_affine(img.shape[1], img.shape[0])
                face = AlignedFace(warp(img, m), m, None, (img.shape[1], img.shape[0]), "center", 0.0)
            else:
                face = align_image(img, fallback="center")
            rows.append((p, {k: str(v) for k, v in face_row(face, p.name, "").items()}))
            img = face.image
        elif img.shape[:2] != (112, 112):
            raise ValueError(f"{p}: {img.shape[1]}x{img.shape[0]} is not an aligned 112x112 face")
        out[i] = img
    return out, (rows if raw and len(rows) == len(paths) else None)


def aligned_sources(aligned: Path, src: Path, crops: list[Path]) -> list[tuple[Path, dict]] | None:
    """(photo, alignment row) of each crop of an aligned folder of ``src``; None when a row is missing."""
    table = aligned / "alignment.csv"
    if not table.is_file():
        return None
    with open(table, newline="") as f:
        rows = {r["out"]: r for r in csv.DictReader(f) if r.get("out")}
    found = [rows.get(c.relative_to(aligned).as_posix()) for c in crops]
    return None if any(r is None for r in found) else [(src / r["path"], r) for r in found]


def from_pair_list(name: str, pairs_file: Path, root: Path, raw: bool, align: str = "mtcnn",
                   limit: int | None = None, src: Path | None = None) -> PairSet:
    """A :class:`PairSet` from an LFW-format pair list whose images live under ``root`` (an aligned
    folder of the photos under ``src``, or the photos themselves with ``raw``)."""
    pairs = read_pairs(pairs_file)
    pairs = [pairs[i] for i in subsample(len(pairs), limit)]
    uniq = unique_images(pairs)
    where = {k: i for i, k in enumerate(uniq)}
    paths = [resolve_image(root, n, i) for n, i in uniq]
    images, sources = _load_aligned(paths, raw, align)
    if sources is None and src is not None:
        sources = aligned_sources(root, src, paths)
    return PairSet(
        name, images,
        np.array([where[(p.name1, p.idx1)] for p in pairs]), np.array([where[(p.name2, p.idx2)] for p in pairs]),
        np.array([p.same for p in pairs]), np.array([p.fold for p in pairs]), sources,
    )


def _needed(src: Path, dst: Path, pairs: list) -> list[str]:
    """Relative paths (``Name/Name_0001.jpg``) of the pairs' photos that have no crop in ``dst``."""
    rels = [resolve_image(src, n, i).relative_to(src).as_posix() for n, i in unique_images(pairs)]
    return [r for r in rels if not (dst / out_name(r)).exists()]


def aligned_pair_photos(src: Path, pairs: list, allow_align: bool = True, workers: int = 2,
                        cache_root: Path | None = None) -> Path | None:
    """The aligned-crop folder of ``src`` holding every photo of ``pairs``; None if that needs
    aligning and ``allow_align`` is False.

    A complete cache (``ensure_aligned``'s marker) is returned as is. Otherwise only the missing
    photos are aligned: :func:`~cqa_core.data.align_run.align_folder` runs over a temporary folder
    of symlinks to them, writing into the cache folder itself (same relative paths, same
    ``alignment.csv``), under the same lock as ``ensure_aligned``. ``cache_root``: ``Settings.cache_root``.
    """
    src = src.expanduser().resolve()
    dst = aligned_dir(src.name, cache_root)
    if (dst / MARKER).exists() or not _needed(src, dst, pairs):
        say_reused_crops(dst, None if (dst / MARKER).exists() else len(unique_images(pairs)))
        return dst
    if not allow_align:
        return None
    dst.mkdir(parents=True, exist_ok=True)
    with _FolderLock(dst / ".lock"), tempfile.TemporaryDirectory() as tmp:
        todo = _needed(src, dst, pairs)  # another process may have aligned them meanwhile
        view = Path(tmp) / src.name
        for rel in todo:
            (view / rel).parent.mkdir(parents=True, exist_ok=True)
            (view / rel).symlink_to(src / rel)
        if todo:
            summary = align_folder(view, dst, workers=workers, progress=False,
                                   landmarks_from=_earlier_landmarks(src, src.name, cache_root))
            log.info("aligned %d pair photos of %s in %.0f s", summary["aligned_this_run"], src, summary["seconds"])
    return dst


def make_pairs(labels: np.ndarray, folds: int = 10, per_fold: int = 300, seed: int = 0
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """LFW-style pairs over labelled images: identities split into ``folds`` disjoint groups,
    each fold ``per_fold`` same-identity then ``per_fold`` different-identity pairs.

    Returns:
        index1 (N,), index2 (N,), issame (N,), fold (N,).
    """
    rng = np.random.default_rng(seed)
    labels = np.asarray(labels)
    ids = rng.permutation(np.unique(labels))
    i1, i2, same, fold = [], [], [], []
    for k, group in enumerate(np.array_split(ids, folds)):
        members = {g: np.flatnonzero(labels == g) for g in group}
        multi = [g for g in group if len(members[g]) >= 2]
        if not multi or len(group) < 2:
            raise ValueError(f"fold {k} has too few identities to draw pairs")
        for _ in range(per_fold):
            a, b = rng.choice(members[multi[rng.integers(len(multi))]], 2, replace=False)
            i1.append(a), i2.append(b), same.append(True), fold.append(k)
        for _ in range(per_fold):
            ga, gb = rng.choice(group, 2, replace=False)
            i1.append(rng.choice(members[ga])), i2.append(rng.choice(members[gb])), same.append(False), fold.append(k)
    return np.array(i1), np.array(i2), np.array(same), np.array(fold)


def load_pairset(spec: str, limit: int | None = None, align: str = "mtcnn", places: Settings | None = None) -> PairSet:
    """Resolve a ``--data`` spec to a :class:`PairSet` (see the module docstring).

    ``places``: the entry point's settings, for ``data_root`` (LFW, CelebA) and ``cache_root``
    (aligned crops); None: their defaults."""
    places = places or Settings()
    if spec == "lfw":
        root = places.lfw
        if align == "center":
            return from_pair_list(spec, root / "pairs.txt", root, raw=True, align="center", limit=limit)
        if limit:  # align only the photos the evaluated pairs use (a fresh machine: seconds, not minutes)
            pairs = read_pairs(root / "pairs.txt")
            aligned = aligned_pair_photos(root, [pairs[i] for i in subsample(len(pairs), limit)],
                                          cache_root=places.cache_root)
        else:
            aligned = ensure_aligned(root, cache_root=places.cache_root)
        return from_pair_list(spec, root / "pairs.txt", aligned, raw=False, limit=limit, src=root)
    if spec.startswith("bin:"):
        images, issame = load_bin(spec[4:])
        keep = subsample(len(issame), limit)

        return PairSet(spec, images, 2 * keep, 2 * keep + 1, issame[keep], default_folds(len(keep)))
    if spec.startswith("pairs:"):
        parts = spec.split(":", 2)
        if len(parts) != 3:
            raise ValueError("use --data pairs:ROOT:PAIRS_FILE")
        return from_pair_list(spec, Path(parts[2]), Path(parts[1]), raw=True, align=align, limit=limit)
    if spec == "celeba299":
        images, labels = load_identities(spec, places=places)
        i1, i2, same, fold = make_pairs(labels)
        keep = subsample(len(same), limit)
        used = np.unique(np.r_[i1[keep], i2[keep]])
        remap = np.full(len(labels), -1)
        remap[used] = np.arange(len(used))
        return PairSet(spec, images[used], remap[i1[keep]], remap[i2[keep]], same[keep], fold[keep])
    raise ValueError(f"unknown --data {spec!r}; use lfw, celeba299, bin:PATH or pairs:ROOT:PAIRS_FILE")


def load_identities(spec: str, limit: int | None = None, places: Settings | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Aligned images (M, 112, 112, 3) and labels (M,) of identities with >= 2 images;
    ``limit`` keeps that many identities (evenly spread). Specs: lfw, celeba299, or a folder.
    ``places``: as for :func:`load_pairset`."""
    places = places or Settings()
    if spec in ("lfw", "celeba299"):
        root = ensure_aligned(places.lfw if spec == "lfw" else places.data_root / "celeba299",
                              cache_root=places.cache_root)
    else:
        root = Path(spec.removeprefix("folder:"))
    ds = FaceFolder(root, min_images=2)
    keep = set(subsample(ds.num_classes, limit).tolist())
    samples = [(p, lab) for p, lab in ds.samples if lab in keep]
    images, _ = _load_aligned([Path(p) for p, _ in samples], raw=False, align="mtcnn")
    return images, np.array([lab for _, lab in samples])
