"""LFW-format pair lists (``pairs.txt`` View 2, ``pairsDevTrain.txt`` / ``pairsDevTest.txt``).

Format: an optional header (``10	300`` = 10 folds of 300 same + 300 different pairs, or ``1100``
= one block of 1100 + 1100), then lines ``Name	i	j`` (same person, images i and j) or
``Name1	i	Name2	j`` (different people). Images live at ``root/Name/Name_{i:04d}.<ext>``.

Folds. With a header (the LFW files) every fold is a block of same-pairs followed by a block of
different-pairs, so a same-pair line that follows a different-pair line starts a new fold; the
header is checked against what was read, so the official folds are kept exactly. Without a
header the layout says nothing about folds (same and different lines often interleave), so the
pairs are split into ``n_folds`` (default 10) stratified folds: the k-th of S same-pairs, in file
order, goes to fold ``k * n_folds // S``, and likewise for the different-pairs, so every fold holds
contiguous runs of both kinds in near-equal numbers (see :func:`stratified_folds`).
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

from cqa_core.data.imageio import IMAGE_EXTENSIONS


class Pair(NamedTuple):
    """One verification pair; ``idx`` are LFW's 1-based image numbers."""

    name1: str
    idx1: int
    name2: str
    idx2: int
    same: bool
    fold: int


class PairsFormatError(ValueError):
    """A pair file that does not follow the LFW format (the message names the line)."""


DEFAULT_FOLDS = 10


def stratified_folds(issame: Sequence[bool], n_folds: int = DEFAULT_FOLDS) -> list[int]:
    """Fold index of each pair: same- and different-pairs each cut into ``n_folds`` contiguous,
    near-equal runs (in their order), so every fold holds both kinds.

    ``n_folds`` is lowered (with a warning) to the count of the rarer kind when that is smaller;
    a list with only one kind gets one fold.

    Example: issame = [T, F, T, F, T, F, T, F], n_folds = 2 -> [0, 0, 0, 0, 1, 1, 1, 1].
    """
    if n_folds < 1:
        raise ValueError(f"folds must be >= 1, got {n_folds}")
    same = [bool(x) for x in issame]
    n_same = sum(same)
    n_diff = len(same) - n_same
    k = max(1, min(n_folds, n_same, n_diff))
    if k < n_folds and len(same):
        warnings.warn(f"{n_same} same and {n_diff} different pairs: using {k} fold(s) instead of {n_folds}",
                      stacklevel=2)
    seen = {True: 0, False: 0}
    total = {True: n_same, False: n_diff}
    folds = []
    for s in same:
        folds.append(seen[s] * k // total[s])
        seen[s] += 1
    return folds


def _is_header(fields: list[str]) -> bool:
    return len(fields) <= 2 and all(x.isdigit() for x in fields)


def has_header(path: str | os.PathLike) -> bool:
    """Whether a pair file starts with an LFW count header (``10 300`` / ``1100``)."""
    for line in Path(path).read_text(errors="replace").splitlines():
        if line.split():
            return _is_header(line.split())
    return False


def read_pairs(path: str | os.PathLike, n_folds: int = DEFAULT_FOLDS) -> list[Pair]:
    """Parse an LFW pair file; see the module docstring.

    Args:
        path: the pair list.
        n_folds: folds of a file without a header (stratified); a header's folds are kept.

    Raises:
        PairsFormatError: a malformed line, or counts that contradict the header.
    """
    try:
        text = Path(path).read_text()
    except UnicodeDecodeError as exc:
        raise PairsFormatError(f"{path}: not a text pair list ({exc.reason} at byte {exc.start})") from exc
    lines = [ln.split() for ln in text.splitlines()]
    numbered = [(i + 1, f) for i, f in enumerate(lines) if f]
    header: list[int] | None = None
    if numbered and _is_header(numbered[0][1]):
        header = [int(x) for x in numbered[0][1]]
        numbered = numbered[1:]
    pairs: list[Pair] = []
    fold, prev_same = 0, True
    for lineno, f in numbered:
        try:
            if len(f) == 3:
                p = (f[0], int(f[1]), f[0], int(f[2]), True)
            elif len(f) == 4:
                p = (f[0], int(f[1]), f[2], int(f[3]), False)
            else:
                raise ValueError(f"{len(f)} fields")
        except ValueError as exc:
            shown = " ".join(f)
            shown = shown if len(shown) <= 80 else shown[:77] + "..."
            raise PairsFormatError(f"{path}:{lineno}: not an LFW pair line ({exc}): {shown!r}") from exc
        if p[4] and not prev_same:
            fold += 1
        prev_same = p[4]
        pairs.append(Pair(*p, fold))
    if header is not None:
        h_folds, per = (header[0], header[1]) if len(header) == 2 else (1, header[0])
        n_same = sum(p.same for p in pairs)
        if len(pairs) != 2 * h_folds * per or n_same != h_folds * per or fold + 1 != h_folds:
            raise PairsFormatError(
                f"{path}: header says {h_folds} fold(s) of {per}+{per} pairs, read {len(pairs)} pairs "
                f"({n_same} same) in {fold + 1} fold(s)"
            )
        return pairs
    folds = stratified_folds([p.same for p in pairs], n_folds)
    return [p._replace(fold=k) for p, k in zip(pairs, folds, strict=True)]


def image_name(name: str, idx: int) -> str:
    """LFW file stem: ``Name_0001``."""
    return f"{name}_{idx:04d}"


def resolve_image(root: str | os.PathLike, name: str, idx: int) -> Path:
    """Path of LFW image ``idx`` of ``name`` under ``root``, whatever its image extension.

    Raises:
        FileNotFoundError: no file ``root/name/Name_NNNN.<image ext>``.
    """
    stem = image_name(name, idx)
    folder = Path(root) / name
    for ext in (".jpg", ".png") + IMAGE_EXTENSIONS:
        for e in (ext, ext.upper()):
            p = folder / f"{stem}{e}"
            if p.exists():
                return p
    raise FileNotFoundError(f"no image {stem}.* in {folder}")


def pair_paths(pairs: list[Pair], root: str | os.PathLike) -> list[tuple[Path, Path]]:
    """The two image paths of every pair (see :func:`resolve_image`)."""
    return [(resolve_image(root, p.name1, p.idx1), resolve_image(root, p.name2, p.idx2)) for p in pairs]


def unique_images(pairs: list[Pair]) -> list[tuple[str, int]]:
    """Sorted distinct ``(name, idx)`` images the pairs use (embed each once)."""
    return sorted({(p.name1, p.idx1) for p in pairs} | {(p.name2, p.idx2) for p in pairs})
