"""Recognizer loaders by name: what a model spec (``--model``, the dashboard's "add a model") can say.

A loader is registered for names (``"dlib"``), for file suffixes (``".onnx"``) and, where a model
is saved as a folder, for the file such a folder holds (``model.safetensors``)::

    register_recognizer(load_dlib_spec, names=(DLIB,), about="dlib: dlib's ResNet (black-box)")
    register_recognizer(load_onnx_file, suffixes=(".onnx",), about="PATH.onnx: any ONNX face embedder")

Each adapter module does so in its own ``register()`` function; ``recognizers.load`` calls the
built-in ones and then those of other packages (entry-point group ``cqa.recognizers``,
:mod:`cqa_core.plugins`) before its first look-up. A loader is called as
``load(target, options)``: ``target`` is the name (str) or the file (Path), ``options`` a
:class:`LoadOptions`, so a new option never changes a loader's signature.

Torch-free, so the viewer side can read the names: the loaders themselves are the adapters'.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from cqa_core.recognizers.base import Recognizer

DEFAULT = "default"
"""The spec of the session's CQA-Face: ``Settings.checkpoint``, else the bundled model."""
DLIB = "dlib"
"""The spec of dlib's ResNet."""


@dataclass(frozen=True)
class LoadOptions:
    """What a loader may use besides its target.

    Attributes:
        device: where a torch model runs.
        checkpoint: the CQA-Face the ``"default"`` spec means (``Settings.checkpoint``; None: bundled).
        layer: the Grad-CAM layer of a white-box model (None: found automatically).
    """

    device: str = "cpu"
    checkpoint: str | None = None
    layer: str | None = None


Loader = Callable[[str | Path, LoadOptions], "Recognizer"]


@dataclass(frozen=True)
class Entry:
    """One registered loader and what it answers to."""

    load: Loader
    names: tuple[str, ...] = ()
    suffixes: tuple[str, ...] = ()
    folder_file: str | None = None
    about: str = ""


ENTRIES: list[Entry] = []
"""Every registered loader, in registration order (built-ins first)."""


def register_recognizer(load: Loader, names: tuple[str, ...] = (), suffixes: tuple[str, ...] = (),
                        folder_file: str | None = None, about: str = "") -> Entry:
    """Register a loader for spec names, file suffixes and / or folders holding ``folder_file``.

    Args:
        load: ``load(target, options) -> Recognizer``; ``target`` is the name, or the file's Path.
        names: specs it answers to exactly ("dlib", "constant").
        suffixes: file suffixes it reads (".onnx"; compared in lower case).
        folder_file: a folder holding this file is that file (``model.safetensors``).
        about: one line for the list of specs ("PATH.onnx: any ONNX face embedder").

    Raises:
        ValueError: a name or suffix another loader already has.
    """
    entry = Entry(load, tuple(names), tuple(s.lower() for s in suffixes), folder_file, about)
    taken = {k for e in ENTRIES for k in (*e.names, *e.suffixes)}
    clash = sorted(taken & {*entry.names, *entry.suffixes})
    if clash:
        raise ValueError(f"recognizer spec(s) {', '.join(clash)} already registered")
    if not (entry.names or entry.suffixes):
        raise ValueError("a recognizer loader needs at least one name or file suffix")
    ENTRIES.append(entry)
    return entry


def by_name(name: str) -> Entry | None:
    """The loader registered for the spec ``name``."""
    return next((e for e in ENTRIES if name in e.names), None)


def by_suffix(suffix: str) -> Entry | None:
    """The loader registered for files ending in ``suffix``."""
    return next((e for e in ENTRIES if suffix.lower() in e.suffixes), None)


def folder_files() -> list[str]:
    """Files a model folder may hold, in registration order."""
    return [e.folder_file for e in ENTRIES if e.folder_file]


def names() -> list[str]:
    """Every registered spec name."""
    return [n for e in ENTRIES for n in e.names]


def describe() -> str:
    """The registered specs in one line, for help texts and errors."""
    return " | ".join(e.about or "/".join((*e.names, *e.suffixes)) for e in ENTRIES)
