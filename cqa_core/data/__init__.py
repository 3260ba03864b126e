"""Data pipeline: loading, alignment, datasets, pair lists, degradations, downloads.

Only tiny path helpers live here so ``import cqa_core.data`` stays light; the heavy modules
(``align``, ``datasets``, ``degrade``) import numpy / torch / cv2 / facenet_pytorch lazily.

Colour convention everywhere in this package: images are **RGB** uint8. OpenCV decodes to BGR;
every cv2 read is converted at the reading boundary, never later. insightface RecordIO / .bin
files hold ordinary JPEGs (``cv2.imencode`` of a BGR array writes a correctly coloured file), so
they decode to RGB like any other photo.
"""

from __future__ import annotations

from pathlib import Path

from cqa_core.settings import LFW_DIR, Settings

__all__ = ["cache_dir", "lfw_dir", "shared_data_dir", "repo_root"]


def repo_root() -> Path:
    """The checkout root: the parent of the ``cqa_core`` package directory."""
    return Path(__file__).resolve().parents[2]


def shared_data_dir() -> Path:
    """Root of the shared face data (LFW, CelebA subset, masks, fixtures).

    ``Settings.data_root``: env ``CQA_DATA``, else ``<repo_root>/../shared/data``.
    """
    return Settings.from_env().data_root


def lfw_dir() -> Path:
    """LFW deep-funneled under :func:`shared_data_dir`."""
    return shared_data_dir() / LFW_DIR


def cache_dir() -> Path:
    """Where derived data (aligned crops, downloads) is cached.

    ``Settings.cache_root``: env ``CQA_CACHE``, else ``~/.cache/cqa-face``. The directory is not created here.
    """
    return Settings.from_env().cache_root
