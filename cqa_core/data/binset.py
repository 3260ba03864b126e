"""insightface ``.bin`` verification sets (lfw.bin, cfp_fp.bin, agedb_30.bin, ...).

A ``.bin`` is a pickle of ``(bins, issame_list)``: ``bins`` holds 2N encoded images (JPEG/PNG
bytes, either plain ``bytes`` or uint8 numpy arrays of shape (n,) / (n, 1)), pair k is images
2k and 2k+1, ``issame_list`` holds N booleans. The images are ordinary JPEGs (insightface wrote
them with ``cv2.imencode`` from BGR arrays, which yields correctly coloured files), so we decode
them as RGB.

Pickles can run code, so :func:`load_bin` uses :class:`RestrictedUnpickler`, which admits only
numpy array / dtype / scalar reconstruction and ``_codecs.encode`` (how Python 3 protocol-2
pickles store ``bytes``); anything else is refused. Every way a file can fail to be a .bin
(a refused global, a truncated or garbled pickle, the wrong structure) raises
:class:`BinFormatError`, a ``ValueError`` whose message names the file.
"""

from __future__ import annotations

import io
import os
import pickle
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from cqa_core.data.imageio import decode_image

_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
    ("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode"),
}


class BinFormatError(ValueError):
    """A file that is not a readable insightface .bin (the message names the file and why)."""


class RefusedGlobal(pickle.UnpicklingError):
    """A pickle that names a global outside the allow-list (it could run code)."""


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that refuses every global outside a numpy / bytes allow-list."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _ALLOWED:
            return super().find_class(module, name)
        raise RefusedGlobal(f"refused to load {module}.{name} from a .bin (only numpy arrays and bytes)")


def restricted_loads(data: bytes) -> Any:
    """``pickle.loads`` through :class:`RestrictedUnpickler` (py2 pickles read with bytes)."""
    return RestrictedUnpickler(io.BytesIO(data), encoding="bytes").load()


def _as_bytes(b: Any) -> bytes:
    if isinstance(b, (bytes, bytearray)):
        return bytes(b)
    if isinstance(b, np.ndarray) and b.dtype == np.uint8:
        return b.tobytes()
    raise ValueError(f"unexpected image entry of type {type(b).__name__} in a .bin")


def load_bin_raw(path: str | os.PathLike) -> tuple[list[bytes], np.ndarray]:
    """The encoded images and the (N,) bool issame array of a .bin, not decoded.

    Raises:
        FileNotFoundError: no such file.
        BinFormatError: anything else that keeps the file from being a .bin.
    """
    if not Path(path).is_file():
        raise FileNotFoundError(f".bin file not found: {path}")
    with open(path, "rb") as f:
        data = f.read()
    try:
        obj = restricted_loads(data)
    except RefusedGlobal as exc:
        raise BinFormatError(f"{path}: {exc}") from exc
    except Exception as exc:  # garbage makes the unpickler fail in many ways (EOFError, KeyError, ...)
        raise BinFormatError(f"{path}: not a readable .bin pickle ({type(exc).__name__}: {exc})") from exc
    if not (isinstance(obj, (tuple, list)) and len(obj) == 2):
        raise BinFormatError(f"{path}: not an insightface .bin (expected a (bins, issame) pair)")
    bins, issame = obj
    try:
        issame = np.asarray([bool(x) for x in issame])  # (N,)
        n_bins = len(bins)
    except TypeError as exc:
        raise BinFormatError(f"{path}: not an insightface .bin ({exc})") from exc
    if n_bins != 2 * len(issame):
        raise BinFormatError(f"{path}: {n_bins} images for {len(issame)} pairs (expected twice as many)")
    try:
        return [_as_bytes(b) for b in bins], issame
    except ValueError as exc:
        raise BinFormatError(f"{path}: {exc}") from exc


def load_bin(path: str | os.PathLike, size: int = 112) -> tuple[np.ndarray, np.ndarray]:
    """Decode a .bin verification set.

    Returns:
        images (2N, size, size, 3) uint8 RGB (resized with area interpolation if stored at
        another size) and issame (N,) bool; pair k = images 2k, 2k+1.
    """
    raw, issame = load_bin_raw(path)
    out = np.empty((len(raw), size, size, 3), np.uint8)  # (2N, size, size, 3)
    for i, b in enumerate(raw):
        img = decode_image(b, name=f"{Path(path).name}[{i}]")  # (h, w, 3) RGB
        if img.shape[:2] != (size, size):
            import cv2  # optional: OpenCV, the data extra

            img = cv2.resize(img, (size, size), interpolation=cv2.INTER_AREA)
        out[i] = img
    return out, issame


def write_bin(path: str | os.PathLike, images: list[Any], issame: list[bool], as_arrays: bool = True,
              quality: int = 95) -> Path:
    """Write a .bin (protocol 4) that :func:`load_bin` and insightface read.

    Args:
        path: output file.
        images: 2N items, each encoded bytes or an (H, W, 3) uint8 RGB array (JPEG-encoded here).
        issame: N booleans.
        as_arrays: store each image as a uint8 (n, 1) numpy array (like the shared fixture)
            instead of plain bytes.
        quality: JPEG quality for arrays that need encoding.
    """
    if len(images) != 2 * len(issame):
        raise ValueError(f"{len(images)} images for {len(issame)} pairs")
    bins: list[Any] = []
    for im in images:
        if isinstance(im, np.ndarray) and im.ndim == 3:
            buf = io.BytesIO()
            Image.fromarray(im).save(buf, format="JPEG", quality=quality)
            im = buf.getvalue()
        b = _as_bytes(im)
        bins.append(np.frombuffer(b, np.uint8).reshape(-1, 1).copy() if as_arrays else b)
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    with open(p, "wb") as f:
        pickle.dump((bins, [bool(x) for x in issame]), f, protocol=4)
    return p
