"""The wire format between a viewer kernel and the analysis service, defined once, numpy only.

* A **face** travels as a reference: the file's bytes for a gallery photo (the service hashes
  them, so its cache is shared by every viewer), raw pixels for an upload or an edited face,
  base64 in JSON, with its alignment mode: :func:`face_ref` / :func:`read_face`.
* A float or uint8 **array** (a mask's alpha): :func:`array_ref` / :func:`read_array`.
* An **analysis** (``FaceAnalysis``, ``PairAnalysis``, ``MaskEffect``) travels as an ``.npz``
  archive (``numpy.savez``, read with ``allow_pickle=False``, so decoding never runs code) whose
  arrays are named by their field path (``b.branches.attention``, ``maps.gradcam``,
  ``a.branches.region_shares.nose``) plus a ``__meta__`` entry holding the rest as JSON (scalars,
  the methods' checks, which record each nested field is): :func:`encode` / :func:`decode`.
* A gallery-wide **summary** of a face: :class:`FaceSummary`, as a JSON row.

The client (``workbench.client``) and the service (``workbench.service.app``) both use
this module; neither writes the format itself.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from cqa_core.data.imageio import MAX_PIXELS, ImageTooLargeError, decode_image
from cqa_core.explain.render import overall_quality
from cqa_core.explain.result import (
    BranchAnalysis,
    BranchPair,
    Check,
    FaceAnalysis,
    MaskEffect,
    PairAnalysis,
    Photo,
)
from cqa_core.settings import AlignMode

WIRE_VERSION = 3
ARRAY_DTYPES = ("uint8", "float32", "float64")
MAX_BODY = 64 * 2**20
"""Bytes of one request body the service reads (413 beyond): a pair of 10 MB uploads, base64, fits."""
MAX_FACES = 64
"""Faces per ``/summaries`` call (422 beyond); the client splits a gallery into calls."""


@dataclass
class Face:
    """A face the user picked: a name, a source (file path, (H, W, 3) uint8 array or ``Photo``), its alignment."""

    name: str
    source: Any
    align: AlignMode = AlignMode.MTCNN

    def __post_init__(self) -> None:
        self.align = AlignMode.parse(self.align)


class FaceSummary(NamedTuple):
    """The few numbers of a face that gallery-wide views need (no maps)."""

    quality: np.ndarray  # (b,) S_hat (empty without branches)
    overall: float  # attention-weighted S_hat (``render.overall_quality``); nan without branches
    cal: float  # CAL penalty; nan without branches
    embedding_norm: float

    def row(self) -> dict[str, Any]:
        """As a JSON row."""
        return {"quality": [float(q) for q in self.quality], "overall": float(self.overall), "cal": float(self.cal),
                "embedding_norm": float(self.embedding_norm)}

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> FaceSummary:
        return cls(np.asarray(row["quality"], np.float32), float(row["overall"]), float(row["cal"]),
                   float(row["embedding_norm"]))

    @classmethod
    def of(cls, fa: FaceAnalysis) -> FaceSummary:
        """The summary of a single-face analysis."""
        br = fa.branches
        if br is None:
            return cls(np.zeros(0, np.float32), float("nan"), float("nan"), float(fa.embedding_norm))
        return cls(np.asarray(br.quality), float(overall_quality(br.quality, br.attention)), float(br.cal),
                   float(fa.embedding_norm))


# ---------------------------------------------------------------- faces and arrays


def face_ref(face: Face | None) -> dict[str, Any] | None:
    """A face for the wire: file bytes for a path, raw pixels for an array."""
    if face is None:
        return None
    source, align = face.source, AlignMode.parse(face.align).value
    if isinstance(source, (str, Path)):
        path = Path(source)
        if not path.is_file():
            raise ValueError(f"image file not found: {path}")
        return {"file": base64.b64encode(path.read_bytes()).decode(), "name": path.name, "align": align}
    arr = np.ascontiguousarray(source.pixels if isinstance(source, Photo) else source)
    if arr.dtype != np.uint8 or arr.ndim != 3 or arr.shape[2] != 3:
        raise ValueError(f"expected an HxWx3 uint8 RGB image, got shape {arr.shape} dtype {arr.dtype}")
    return {"pixels": base64.b64encode(arr.tobytes()).decode(), "shape": list(arr.shape), "align": align,
            "name": face.name}


def read_face(ref: dict[str, Any] | None, max_pixels: int = MAX_PIXELS) -> Face | None:
    """A wire face -> a ``Face`` whose source is a ``Photo`` (pixels + sha1 of the file) or an array.

    A face over ``max_pixels`` is refused (``ImageTooLargeError``) before its pixels are decoded.
    """
    if ref is None:
        return None
    if not isinstance(ref, dict) or not ("file" in ref or "pixels" in ref):
        raise ValueError("a face must be a JSON object with 'file' or 'pixels'")
    align = AlignMode.parse(ref.get("align", AlignMode.MTCNN.value))
    name = str(ref.get("name", "<upload>"))[:200]
    if "file" in ref:
        data = base64.b64decode(ref["file"])
        return Face(name, Photo(decode_image(data, name=name, max_pixels=max_pixels), hashlib.sha1(data).hexdigest()),
                    align)
    try:
        shape = tuple(int(s) for s in ref["shape"])
    except (TypeError, ValueError):
        raise ValueError(f"{name}: 'shape' must be 3 integers (height, width, 3)") from None
    if len(shape) == 3 and shape[0] * shape[1] > max_pixels:
        raise ImageTooLargeError(f"{name}: {shape[1]}x{shape[0]} pixels exceed the {max_pixels / 1e6:.3g} MP limit")
    arr = np.frombuffer(base64.b64decode(ref["pixels"]), np.uint8)
    if len(shape) != 3 or shape[2] != 3 or arr.size != int(np.prod(shape)):
        raise ValueError(f"pixels do not match the shape {shape}")
    return Face(name, arr.reshape(shape), align)


def array_ref(arr: np.ndarray | None) -> dict[str, Any] | None:
    if arr is None:
        return None
    arr = np.ascontiguousarray(arr)
    return {"data": base64.b64encode(arr.tobytes()).decode(), "shape": list(arr.shape), "dtype": str(arr.dtype)}


def read_array(ref: dict[str, Any] | None) -> np.ndarray | None:
    if ref is None:
        return None
    if ref["dtype"] not in ARRAY_DTYPES:
        raise ValueError(f"array dtype {ref['dtype']} is not accepted")
    arr = np.frombuffer(base64.b64decode(ref["data"]), np.dtype(ref["dtype"]))
    return arr.reshape(tuple(int(s) for s in ref["shape"])).copy()


# ---------------------------------------------------------------- analyses

_RECORDS = {cls.__name__: cls for cls in (FaceAnalysis, PairAnalysis, BranchAnalysis, BranchPair)}


def _flatten(obj: Any, prefix: str, arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> None:
    """A record's fields by path: arrays into ``arrays``, everything else (JSON) into ``meta``."""
    for f in dataclasses.fields(obj):
        v, key = getattr(obj, f.name), prefix + f.name
        if dataclasses.is_dataclass(v):
            meta[key] = {"record": type(v).__name__}
            _flatten(v, key + ".", arrays, meta)
        elif isinstance(v, np.ndarray):
            arrays[key] = v
        elif isinstance(v, dict) and f.name == "checks":
            meta[key] = {m: [list(c) for c in cs] for m, cs in v.items()}
        elif isinstance(v, dict):
            meta[key] = {"arrays": sorted(v)}
            arrays.update({f"{key}.{k}": np.asarray(a) for k, a in v.items()})
        else:  # str, float, None
            meta[key] = v


def _unflatten(cls: type, arrays: dict[str, np.ndarray], meta: dict[str, Any], prefix: str) -> Any:
    kw: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        key = prefix + f.name
        m = meta.get(key)
        if key in arrays:
            kw[f.name] = arrays[key]
        elif isinstance(m, dict) and "record" in m:
            kw[f.name] = _unflatten(_RECORDS[m["record"]], arrays, meta, key + ".")
        elif isinstance(m, dict) and "arrays" in m:
            kw[f.name] = {k: arrays[f"{key}.{k}"] for k in m["arrays"]}
        elif f.name == "checks":
            kw[f.name] = {name: [Check(bool(c[0]), str(c[1]), dict(c[2])) for c in cs] for name, cs in (m or {}).items()}
        else:
            kw[f.name] = m
    return cls(**kw)


def encode(obj: FaceAnalysis | PairAnalysis | MaskEffect) -> bytes:
    """A FaceAnalysis, PairAnalysis or MaskEffect -> bytes (an .npz archive; see the module docstring)."""
    arrays: dict[str, np.ndarray] = {}
    meta: dict[str, Any] = {"version": WIRE_VERSION, "type": type(obj).__name__}
    if isinstance(obj, (FaceAnalysis, PairAnalysis)):
        _flatten(obj, "", arrays, meta)
    elif isinstance(obj, MaskEffect):
        meta["similarity"] = float(obj.similarity)
        arrays.update({k: np.asarray(v) for k, v in obj._asdict().items() if k != "similarity"})
    else:
        raise TypeError(f"cannot encode a {type(obj).__name__}")
    arrays["__meta__"] = np.frombuffer(json.dumps(meta).encode(), np.uint8)
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def decode(data: bytes) -> FaceAnalysis | PairAnalysis | MaskEffect:
    """Bytes from :func:`encode` -> the object (never unpickles)."""
    with np.load(io.BytesIO(data), allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    meta = json.loads(arrays.pop("__meta__").tobytes())
    if meta.get("version") != WIRE_VERSION:
        raise ValueError(f"analysis wire format {meta.get('version')} is not {WIRE_VERSION}: update cqa-face on both sides")
    if meta["type"] == "MaskEffect":
        return MaskEffect(**{k: arrays[k] for k in MaskEffect._fields if k != "similarity"}, similarity=meta["similarity"])
    if meta["type"] not in ("FaceAnalysis", "PairAnalysis"):
        raise ValueError(f"unknown analysis type {meta['type']!r} on the wire")
    return _unflatten(_RECORDS[meta["type"]], arrays, meta, "")
