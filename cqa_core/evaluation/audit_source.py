"""What ``cqa audit`` reads: a folder of faces or an insightface RecordIO, with each face's name.

Specs (:func:`open_source`):

* ``lfw`` / ``celeba299``: the shared photos, aligned once through
  :func:`~cqa_core.data.datasets.ensure_aligned` (the cache the other commands use);
* a folder of identity folders of aligned 112 x 112 crops (``Identity/img.jpg``), read as is;
  a folder of raw photos (its first image is not 112 x 112) is aligned into the cache first;
* ``PREFIX.rec`` or ``PREFIX`` with ``PREFIX.rec`` beside it (and optionally ``PREFIX.idx``).

Alignment method per face: the ``method`` column of the folder's ``alignment.csv`` (``mtcnn`` or
``center`` for the fixed-crop fallback when no face was found), ``pre-aligned`` for crops without
that file, ``recordio`` for RecordIO records (insightface packs do not record it).
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image

from cqa_core.data.datasets import MARKER, FaceFolder, ensure_aligned
from cqa_core.data.imageio import is_image_file
from cqa_core.data.recordio import RecordIODataset
from cqa_core.settings import Settings


@dataclass
class AuditSource:
    """A dataset to audit and a name for every face, in dataset order."""

    kind: str  # "folder" | "recordio"
    root: str  # resolved folder, or the RecordIO prefix
    dataset: Any  # FaceFolder | RecordIODataset: items (uint8 (3, 112, 112), label)
    paths: list[str]  # folder: path relative to root; recordio: "key:N"
    labels: list[int]
    identities: list[str]
    methods: list[str]

    def __len__(self) -> int:
        return len(self.paths)


def _first_image_size(root: Path) -> tuple[int, int] | None:
    for dirpath, dirnames, files in os.walk(root):
        dirnames.sort()
        for f in sorted(files):
            if is_image_file(f) and not f.startswith("."):
                with Image.open(Path(dirpath, f)) as im:
                    return im.size
    return None


def _methods(root: Path, rel_paths: list[str]) -> list[str]:
    table = root / "alignment.csv"
    if not table.exists():
        return ["pre-aligned"] * len(rel_paths)
    with open(table, newline="") as f:
        by_out = {r["out"]: r["method"] for r in csv.DictReader(f)}
    return [by_out.get(p, "pre-aligned") for p in rel_paths]


def open_folder(root: Path, cache_root: Path | None = None) -> AuditSource:
    if not (root / MARKER).exists() and _first_image_size(root) not in (None, (112, 112)):
        print(f"{root} holds photos, not 112 x 112 crops: aligning them first (cached, resumable)")
        root = ensure_aligned(root, cache_root=cache_root)
    ds = FaceFolder(root)
    rel = [Path(p).relative_to(root).as_posix() for p, _ in ds.samples]
    labels = [lab for _, lab in ds.samples]
    return AuditSource("folder", str(root), ds, rel, labels, [ds.classes[lab] for lab in labels], _methods(root, rel))


def open_recordio(prefix: str) -> AuditSource:
    ds = RecordIODataset(prefix)
    if len(ds) == 0:
        raise ValueError(f"{prefix}.rec holds no face records")
    labels = [int(v) for v in ds.targets]
    keys = [int(k) for k in ds.keys]
    return AuditSource("recordio", prefix, ds, [f"key:{k}" for k in keys], labels, [str(v) for v in labels],
                       ["recordio"] * len(keys))


def open_source(spec: str, places: Settings | None = None) -> AuditSource:
    """Resolve a DATASET argument (module docstring) to an :class:`AuditSource`; ``places``: the entry
    point's settings (``data_root`` for lfw / celeba299, ``cache_root`` for aligned crops; None: defaults)."""
    places = places or Settings()
    if spec in ("lfw", "celeba299"):
        src = places.lfw if spec == "lfw" else places.data_root / spec
        return open_folder(ensure_aligned(src, cache_root=places.cache_root))
    path = Path(spec).expanduser()
    if path.is_dir():
        return open_folder(path.resolve(), places.cache_root)
    prefix = str(path)[:-4] if str(path).endswith(".rec") else str(path)
    if os.path.isfile(prefix + ".rec"):
        return open_recordio(str(Path(prefix).resolve()))
    if path.exists():
        raise ValueError(f"{spec}: not a folder of faces or a RecordIO .rec file")
    raise FileNotFoundError(f"dataset not found: {spec}")
