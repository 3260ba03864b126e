"""The gallery: which photos the dashboard lists, and how each one is aligned.

A gallery folder (``Settings.gallery``: ``--faces`` / ``CQA_FACES``, else LFW) of person
sub-folders gives the first ``Settings.people`` people with at least two photos, two photos each,
named "Aaron Peirsol 1" and "Aaron Peirsol 2", so the Pair tab can show a same-person pair from
the start (:func:`partner_of` picks the second face); a folder where nobody has two photos gives
each person's one photo, named after the person. A flat folder gives its first ``Settings.people``
photos, named after their files. Every photo is MTCNN-aligned unless the settings ask for the centre
affine (``--align center``) or its folder says it is LFW-framed: a file ``.cqa-framing`` holding
``lfw``, in the folder or its parent. The viewers' sessions and the service's warm-up both list
the gallery here, so they ask for the same analyses.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from pathlib import Path

from cqa_core.data.imageio import is_image_file
from cqa_core.settings import AlignMode, Settings
from workbench.wire import Face

FRAMING_FILE = ".cqa-framing"
PHOTOS_PER_PERSON = 2
"""Photos shown per person in a gallery of person folders (a same-person pair for the Pair tab)."""
_PHOTO_NUMBER = re.compile(r" \d+$")


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
    """(name, path) of the gallery photos of up to ``people`` people under ``root`` (see the module docstring).

    Args:
        root: a folder of person sub-folders (LFW's ``Name/Name_NNNN.jpg``) or of photos.
        people: how many people (person folders) or photos (a flat folder) to list.

    Returns:
        Person folders: ``PHOTOS_PER_PERSON`` photos of each of the first ``people`` people who have
        that many (sorted by folder name, each person's photos sorted by file name), named
        "<person> 1", "<person> 2"; where nobody has two, each person's first photo named
        "<person>". A flat folder: its first ``people`` photos named after their files. Empty when
        ``root`` is not a folder.
    """
    root = Path(root)
    if not root.is_dir():
        return []
    pairs: list[tuple[str, Path]] = []
    singles: list[tuple[str, Path]] = []  # the fallback: nobody has two photos
    for entry in sorted(root.iterdir()):
        if entry.is_dir():
            person = entry.name.replace("_", " ")
            photos = sorted(p for p in entry.iterdir() if is_image_file(p))[:PHOTOS_PER_PERSON]
            if len(photos) == PHOTOS_PER_PERSON:
                pairs += [(f"{person} {k}", photo) for k, photo in enumerate(photos, start=1)]
            elif photos and len(singles) < people:
                singles.append((person, photos[0]))
        elif is_image_file(entry) and len(singles) < people:
            singles.append((entry.stem.replace("_", " "), entry))
        if len(pairs) >= people * PHOTOS_PER_PERSON:
            break
    return pairs or singles


def person_of(name: str) -> str:
    """The person a gallery name shows: the name without its photo number ("Aaron Peirsol 2" -> "Aaron Peirsol")."""
    return _PHOTO_NUMBER.sub("", name)


def partner_of(name: str, faces: Iterable[str]) -> str:
    """The default second face for ``name``: the same person's other photo, else the next face.

    Args:
        name: the first face's name.
        faces: the names to choose from, in gallery order (a dict of faces gives its names).

    Returns:
        The first other name of the same person (:func:`person_of`); else the name after ``name``
        (wrapping round; the first other name when ``name`` is not among them); else ``name`` itself.
    """
    names = list(faces)
    others = [n for n in names if n != name]
    same = [n for n in others if person_of(n) == person_of(name)]
    if same:
        return same[0]
    if not others:
        return name
    if name not in names:
        return others[0]
    i = names.index(name)
    return next(n for n in names[i + 1:] + names[:i] if n != name)


def gallery_faces(settings: Settings) -> list[Face]:
    """The gallery of ``settings`` as faces, each with its alignment."""
    return [Face(name, str(path), gallery_align(path, settings.align))
            for name, path in gallery_paths(settings.gallery, settings.people)]
