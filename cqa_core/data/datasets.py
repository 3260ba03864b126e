"""Datasets of aligned faces: identity folders on disk, plus the alignment cache.

Item contract (shared with :class:`~cqa_core.data.recordio.RecordIODataset`): ``(image, label)``
where ``image`` is a ``torch.uint8`` tensor (3, 112, 112) **RGB** and ``label`` an ``int``.
Normalisation to [-1, 1] (:func:`cqa_core.preprocess.normalize`) and random flips happen on the
training device; the CPU side only decodes, so a core keeps up with a GPU.
"""

from __future__ import annotations

import csv
import fcntl
import io
import json
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torchvision.io import ImageReadMode, decode_image

from cqa_core.data import cache_place
from cqa_core.data.align import ALIGN_VERSION
from cqa_core.data.align_run import align_folder
from cqa_core.data.imageio import is_image_file
from cqa_core.data.reuse import home_short, say_reused

DECODERS = ("cv2", "torchvision", "pil")


def decode_chw(data: bytes, decoder: str = "cv2") -> torch.Tensor:
    """Encoded image bytes -> uint8 (3, H, W) RGB tensor.

    Args:
        data: JPEG / PNG bytes.
        decoder: "cv2" (libjpeg-turbo through OpenCV, decodes BGR, converted here),
            "torchvision" (``torchvision.io.decode_image``) or "pil".
    """
    if decoder == "cv2":
        import cv2  # optional: OpenCV, the data extra

        arr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)  # (H, W, 3) BGR
        if arr is None:
            raise ValueError("cv2 could not decode the image bytes")
        arr = cv2.cvtColor(arr, cv2.COLOR_BGR2RGB)  # (H, W, 3) RGB (SIMD, faster than [..., ::-1])
        return torch.from_numpy(arr).permute(2, 0, 1).contiguous()  # (3, H, W)
    if decoder == "torchvision":
        buf = torch.frombuffer(bytearray(data), dtype=torch.uint8)  # (n,)
        return decode_image(buf, mode=ImageReadMode.RGB)  # (3, H, W)
    if decoder == "pil":
        arr = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))  # (H, W, 3)
        return torch.from_numpy(np.ascontiguousarray(arr.transpose(2, 0, 1)))  # (3, H, W)
    raise ValueError(f"unknown decoder {decoder!r}; choose one of {DECODERS}")


class FaceFolder(torch.utils.data.Dataset):
    """Aligned faces in identity folders: ``root/Identity/img.jpg`` -> ``(uint8 (3,112,112), label)``.

    Labels are the index of the identity folder in sorted order (``.classes``). Files at the
    root (``alignment.csv``, ``misses.csv``) and hidden files are ignored.

    Args:
        root: folder of identity folders of 112 x 112 crops (e.g. from :func:`ensure_aligned`).
        decoder: see :func:`decode_chw` ("cv2" is fastest here, see docs/benchmarks.md).
        transform: optional callable on the uint8 (3, 112, 112) tensor (keep it cheap).
        min_images: drop identities with fewer images.
        skip_fallback: drop crops that ``misses.csv`` marks as centre-fallback (no face found).
    """

    def __init__(
        self,
        root: str | os.PathLike,
        decoder: str = "cv2",
        transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
        min_images: int = 1,
        skip_fallback: bool = False,
    ) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise FileNotFoundError(f"dataset folder not found: {self.root}")
        if decoder not in DECODERS:
            raise ValueError(f"unknown decoder {decoder!r}; choose one of {DECODERS}")
        self.decoder, self.transform = decoder, transform
        skip = _fallback_paths(self.root) if skip_fallback else set()
        per_class: dict[str, list[str]] = {}
        for d in sorted(p for p in self.root.iterdir() if p.is_dir() and not p.name.startswith(".")):
            files = sorted(f.name for f in d.iterdir() if is_image_file(f.name) and not f.name.startswith("."))
            files = [f for f in files if f"{d.name}/{f}" not in skip]
            if len(files) >= min_images:
                per_class[d.name] = files
        self.classes: list[str] = list(per_class)
        self.class_to_idx = {c: i for i, c in enumerate(self.classes)}
        self.samples: list[tuple[str, int]] = [
            (str(self.root / c / f), i) for i, c in enumerate(self.classes) for f in per_class[c]
        ]
        if not self.samples:
            raise ValueError(f"no images found in identity folders under {self.root}")

    @property
    def num_classes(self) -> int:
        """Number of identities."""
        return len(self.classes)

    @property
    def targets(self) -> list[int]:
        """The label of every sample, in order."""
        return [label for _, label in self.samples]

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        path, label = self.samples[index]
        with open(path, "rb") as f:
            img = decode_chw(f.read(), self.decoder)  # (3, H, W) uint8 RGB
        if img.shape[1:] != (112, 112):
            raise ValueError(f"{path}: {tuple(img.shape[1:])} is not an aligned 112x112 face; "
                             "run `cqa align` or cqa_core.data.datasets.ensure_aligned first")
        if self.transform is not None:
            img = self.transform(img)
        return img, label


def random_flip(img: torch.Tensor, p: float = 0.5) -> torch.Tensor:
    """Cheap CPU augment: horizontal flip of a (3, H, W) tensor with probability ``p``."""
    return img.flip(-1) if torch.rand(()) < p else img  # (3, H, W)


def _fallback_paths(root: Path) -> set[str]:
    miss = root / "misses.csv"
    if not miss.exists():
        return set()
    with open(miss, newline="") as f:
        return {r["path"] for r in csv.DictReader(f) if r["action"] == "center"}


MARKER = ".complete.json"


def aligned_dir(name: str, cache_root: str | os.PathLike | None = None, version: int | None = None) -> Path:
    """The cache folder of aligned crops called ``name`` made by alignment ``version``.

    Version 1 (the unweighted 5-point fit) lived in ``<cache_root>/aligned/<name>``; later versions
    in ``<cache_root>/aligned-v<N>/<name>``. None means the current
    :data:`~cqa_core.data.align.ALIGN_VERSION`. ``cache_root`` is ``Settings.cache_root``, passed
    down by the entry point (None: its default, ``~/.cache/cqa-face``).
    """
    v = ALIGN_VERSION if version is None else version
    return cache_place(cache_root) / ("aligned" if v == 1 else f"aligned-v{v}") / name


def _earlier_landmarks(src: Path, name: str, cache_root: str | os.PathLike | None) -> Path | None:
    """The newest earlier-version cache of the same source whose landmarks can be reused."""
    for v in range(ALIGN_VERSION - 1, 0, -1):
        old = aligned_dir(name, cache_root, v)
        try:
            same_src = json.loads((old / MARKER).read_text()).get("src") == str(src)
        except (OSError, ValueError):
            continue
        if same_src and (old / "alignment.csv").exists():
            return old / "alignment.csv"
    return None


def ensure_aligned(src_root: str | os.PathLike, name: str | None = None, workers: int = 2,
                   fallback: str | None = "center", progress: bool = True,
                   cache_root: str | os.PathLike | None = None) -> Path:
    """Align a raw photo folder into :func:`aligned_dir` ``(name)`` once; return that folder.

    The first call runs :func:`cqa_core.data.align_run.align_folder` (resumable: an interrupted
    run continues where it stopped) and writes a ``.complete.json`` marker with its summary;
    later calls return at once, saying in one line what they reuse (:func:`say_reused_crops`). ``name`` defaults to the source folder's name. When a cache of
    the same source made by an earlier alignment version exists, its landmarks are re-warped
    with the current fit instead of detecting again (minutes instead of a quarter of an hour).
    ``cache_root``: see :func:`aligned_dir`.
    """
    src = Path(src_root).expanduser().resolve()
    name = name or src.name
    dst = aligned_dir(name, cache_root)
    if (dst / MARKER).exists():
        say_reused_crops(dst)
        return dst
    if not src.is_dir():
        raise FileNotFoundError(f"source folder not found: {src}")

    dst.mkdir(parents=True, exist_ok=True)
    with _FolderLock(dst / ".lock"):  # a second caller waits, then finds the marker
        if (dst / MARKER).exists():
            say_reused_crops(dst)
            return dst
        summary = align_folder(src, dst, fallback=fallback, workers=workers, progress=progress,
                               landmarks_from=_earlier_landmarks(src, name, cache_root))
        tmp = dst / f"{MARKER}.{os.getpid()}.tmp"
        tmp.write_text(json.dumps(summary, indent=2))
        os.replace(tmp, dst / MARKER)
    return dst


def say_reused_crops(dst: Path, photos: int | None = None) -> str | None:
    """The one line a job that reuses aligned crops prints: where, how many, aligned when.

    Args:
        dst: the aligned-crop folder (its ``.complete.json``, else its ``alignment.csv``, dates it).
        photos: how many of its crops the job needs (default: the whole folder's, from the marker).
    """
    marker = dst / MARKER
    summary = json.loads(marker.read_text()) if marker.is_file() else {}
    if photos is not None:
        details = [f"the {photos:,} photos this job needs"]
    else:
        details = [f"{int(summary.get('total', 0)):,} photos", f"{int(summary.get('no_face', 0)):,} with no face found"]
    if summary.get("src"):
        details.append(f"from {home_short(summary['src'])}")
    built = marker if marker.is_file() else dst / "alignment.csv"
    return say_reused(f"the aligned crops (v{ALIGN_VERSION})", dst, details, built) if built.is_file() else None


class _FolderLock:
    """An exclusive ``fcntl.flock`` on a file (no-op where fcntl is missing)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __enter__(self) -> _FolderLock:
        self.f = open(self.path, "a")
        try:
            fcntl.flock(self.f, fcntl.LOCK_EX)
        except ImportError:  # pragma: no cover - Windows
            pass
        return self

    def __exit__(self, *exc: object) -> None:
        self.f.close()  # closing releases the lock
