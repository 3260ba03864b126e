"""Data pipeline: loading, alignment, datasets, pair lists, degradations, downloads.

Only tiny path helpers live here so ``import cqa_core.data`` stays light; the heavy modules
(``align``, ``datasets``, ``degrade``) import numpy / torch / cv2 / facenet_pytorch lazily.

Colour convention everywhere in this package: images are **RGB** uint8. OpenCV decodes to BGR;
every cv2 read is converted at the reading boundary, never later. insightface RecordIO / .bin
files hold ordinary JPEGs (``cv2.imencode`` of a BGR array writes a correctly coloured file), so
they decode to RGB like any other photo.
"""

from __future__ import annotations

import os
from pathlib import Path

from cqa_core.settings import Settings

__all__ = ["cache_place", "data_place", "repo_root"]

DEFAULTS = Settings()
"""The documented defaults (no environment read): what a path left as None means here. The entry
points read the environment once (``Settings.from_env``) and pass their roots down."""


def repo_root() -> Path:
    """The checkout root: the parent of the ``cqa_core`` package directory."""
    return Path(__file__).resolve().parents[2]


def data_place(data_root: str | os.PathLike | None) -> Path:
    """The shared face data root passed down (``Settings.data_root``), or its default ``<checkout>/../shared/data``."""
    return Path(data_root) if data_root is not None else DEFAULTS.data_root


def cache_place(cache_root: str | os.PathLike | None) -> Path:
    """The cache root passed down (``Settings.cache_root``), or its default ``~/.cache/cqa-face`` (not created)."""
    return Path(cache_root) if cache_root is not None else DEFAULTS.cache_root
