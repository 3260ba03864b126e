"""The gallery: which photos the dashboard lists, and how each one is aligned.

A gallery folder (``Settings.gallery``: ``--faces`` / ``CQA_FACES``, else LFW) of person
sub-folders gives each person's first photo; a flat folder gives its photos; the first
``Settings.people`` are shown. Every photo is MTCNN-aligned unless the settings ask for the centre
affine (``--align center``) or its folder says it is LFW-framed: a file ``.cqa-framing`` holding
``lfw``, in the folder or its parent. The viewers' sessions and the service's warm-up both list
the gallery here, so they ask for the same analyses.
"""

from __future__ import annotations

import os
from pathlib import Path

from cqa_core.data.imageio import is_image_file
from cqa_core.settings import AlignMode, Settings
from workbench.wire import Face

FRAMING_FILE = ".cqa-framing"


def lfw_framed(path: str | os.PathLike) -> bool:
    """True when the photo's folder (or its parent, for person sub-folders) says it is LFW-framed."""
    for d in list(Path(path).parents)[:2]:
        marker = d / FRAMING_FILE
        if marker.is_file():
            return marker.read_text().strip().lower() == "lfw"
    return False


def gallery_align(path: str | os.PathLike, mode: AlignMode = AlignMode.MTCNN) -> AlignMode:
    """A gallery photo's alignment: ``mode`` (CENTER on request), or CENTER for an LFW-framed folder."""
    return AlignMode.CENTER if AlignMode.parse(mode) is AlignMode.CENTER or lfw_framed(path) else AlignMode.MTCNN


def gallery_paths(root: str | os.PathLike, people: int) -> list[tuple[str, Path]]:
    """(name, path) of up to ``people`` gallery photos under ``root`` (see the module docstring)."""
    root = Path(root)
    if not root.is_dir():
        return []
    out: list[tuple[str, Path]] = []
    for entry in sorted(root.iterdir()):
        if entry.is_dir():
            photos = sorted(p for p in entry.iterdir() if is_image_file(p))
            if photos:
                out.append((entry.name.replace("_", " "), photos[0]))
        elif is_image_file(entry):
            out.append((entry.stem.replace("_", " "), entry))
        if len(out) >= people:
            break
    return out


def gallery_faces(settings: Settings) -> list[Face]:
    """The gallery of ``settings`` as faces, each with its alignment."""
    return [Face(name, str(path), gallery_align(path, settings.align))
            for name, path in gallery_paths(settings.gallery, settings.people)]
