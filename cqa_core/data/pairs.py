"""LFW-format pair lists (``pairs.txt`` View 2, ``pairsDevTrain.txt`` / ``pairsDevTest.txt``).

Format: an optional header (``10	300`` = 10 folds of 300 same + 300 different pairs, or ``1100``
= one block of 1100 + 1100), then lines ``Name	i	j`` (same person, images i and j) or
``Name1	i	Name2	j`` (different people). Images live at ``root/Name/Name_{i:04d}.<ext>``.

Folds: every fold is a block of same-pairs followed by a block of different-pairs, so a same-pair
line that follows a different-pair line starts a new fold; a header, when present, is checked
against what was read.
"""

from __future__ import annotations

import os
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


def read_pairs(path: str | os.PathLike) -> list[Pair]:
    """Parse an LFW pair file; see the module docstring.

    Raises:
        PairsFormatError: a malformed line, or counts that contradict the header.
    """
    lines = [ln.split() for ln in Path(path).read_text().splitlines()]
    numbered = [(i + 1, f) for i, f in enumerate(lines) if f]
    header: list[int] | None = None
    if numbered and all(x.isdigit() for x in numbered[0][1]) and len(numbered[0][1]) <= 2:
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
            raise PairsFormatError(f"{path}:{lineno}: not an LFW pair line ({exc}): {' '.join(f)!r}") from exc
        if p[4] and not prev_same:
            fold += 1
        prev_same = p[4]
        pairs.append(Pair(*p, fold))
    if header is not None:
        n_folds, per = (header[0], header[1]) if len(header) == 2 else (1, header[0])
        n_same = sum(p.same for p in pairs)
        if len(pairs) != 2 * n_folds * per or n_same != n_folds * per or fold + 1 != n_folds:
            raise PairsFormatError(
                f"{path}: header says {n_folds} fold(s) of {per}+{per} pairs, read {len(pairs)} pairs "
                f"({n_same} same) in {fold + 1} fold(s)"
            )
    return pairs


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
