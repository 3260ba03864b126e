"""InsightFace / MXNet RecordIO files (``train.rec`` + ``train.idx``) in pure Python: no mxnet, no torch.

On-disk record (dmlc-core ``recordio``): uint32 magic ``0xced7230a``, uint32 ``lrec`` (upper 3
bits = continuation flag, lower 29 = length), the payload, zero padding to 4 bytes. A payload
that contains the magic at a 4-aligned offset is split there into parts (flag 1 = first,
2 = middle, 3 = last; the magic itself is dropped and restored on reading). The ``.idx`` file
has one ``key\toffset`` line per record; opening reads it (never the records), and a ``.rec``
without one is indexed by a scan of its frame headers.

Payload (``mx.recordio.pack``): header ``struct IfQQ`` = (flag, label, id, id2), then ``flag``
float32 labels when flag > 0, then the encoded image. insightface's ``train.rec`` starts with
record 0 whose labels are ``(first identity record, end)``; images are records 1 .. first-1.

The training dataset built on these records is :class:`cqa_core.data.recordio.RecordIODataset`;
this module is what a torch-free reader (the dashboard's audit browser) needs.
"""

from __future__ import annotations

import os
import struct
import warnings
from pathlib import Path
from typing import NamedTuple

import numpy as np

MAGIC = 0xCED7230A
_MAGIC_BYTES = struct.pack("<I", MAGIC)
_HEADER = struct.Struct("<IfQQ")


class IRHeader(NamedTuple):
    """mxnet's record header: ``label`` is a float or a float32 array when ``flag`` > 0."""

    flag: int
    label: float | np.ndarray
    id: int
    id2: int


def pack(header: IRHeader, payload: bytes) -> bytes:
    """``mx.recordio.pack``: header (+ array label) + payload."""
    label = header.label
    if isinstance(label, (int, float)) and not isinstance(label, np.ndarray):
        return _HEADER.pack(0, float(label), header.id, header.id2) + payload
    arr = np.asarray(label, dtype=np.float32).ravel()
    return _HEADER.pack(len(arr), 0.0, header.id, header.id2) + arr.tobytes() + payload


def unpack(record: bytes) -> tuple[IRHeader, bytes]:
    """``mx.recordio.unpack``: the inverse of :func:`pack`."""
    flag, label, id1, id2 = _HEADER.unpack_from(record)
    rest = record[_HEADER.size:]
    if flag > 0:
        arr = np.frombuffer(rest[: 4 * flag], dtype=np.float32).copy()
        return IRHeader(flag, arr, id1, id2), rest[4 * flag:]
    return IRHeader(flag, label, id1, id2), rest


def _encode_record(payload: bytes) -> bytes:
    """dmlc WriteRecord: split at 4-aligned magics, each part framed and padded."""
    parts, start = [], 0
    for i in range(0, len(payload) - len(payload) % 4, 4):
        if payload[i:i + 4] == _MAGIC_BYTES:
            parts.append(payload[start:i])
            start = i + 4
    parts.append(payload[start:])
    out = bytearray()
    for k, part in enumerate(parts):
        cflag = 0 if len(parts) == 1 else (1 if k == 0 else (3 if k == len(parts) - 1 else 2))
        out += struct.pack("<II", MAGIC, (cflag << 29) | len(part)) + part + b"\0" * (-len(part) % 4)
    return bytes(out)


class RecordWriter:
    """Writes ``prefix.rec`` and ``prefix.idx`` (keys in write order)."""

    def __init__(self, path_prefix: str | os.PathLike) -> None:
        prefix = str(path_prefix)
        Path(prefix).parent.mkdir(parents=True, exist_ok=True)
        self.rec = open(prefix + ".rec", "wb")
        self.idx = open(prefix + ".idx", "w")

    def write(self, key: int, payload: bytes) -> None:
        """Append one record (a packed payload) under integer ``key``."""
        self.idx.write(f"{key}\t{self.rec.tell()}\n")
        self.rec.write(_encode_record(payload))

    def close(self) -> None:
        self.rec.close()
        self.idx.close()

    def __enter__(self) -> RecordWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def read_index(idx_path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """Parse a ``.idx`` (``key\toffset`` lines) into int64 arrays (keys (N,), offsets (N,)).

    One vectorised parse, no per-line Python: about 40 ms per million records.
    """
    with open(idx_path, "rb") as f:
        data = f.read()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # numpy warns (does not raise) on a malformed line
        try:
            flat = np.fromstring(data, dtype=np.int64, sep=" ")  # (2N,) any whitespace separates
        except (DeprecationWarning, ValueError) as exc:
            raise ValueError(f"{idx_path}: not a RecordIO index ({exc})") from None
    if flat.size % 2:
        raise ValueError(f"{idx_path}: odd number of fields; expected 'key<TAB>offset' lines")
    pairs = flat.reshape(-1, 2)  # (N, 2)
    return pairs[:, 0].copy(), pairs[:, 1].copy()


def _frame_header(f, truncated: str, bad: str) -> int:
    """The next frame's header word (part flag << 29 | length) from ``f``; ValueError(``truncated``)
    when it is cut short, ValueError(``bad``) when its magic is wrong."""
    head = f.read(8)
    if len(head) < 8:
        raise ValueError(truncated)
    magic, lrec = struct.unpack("<II", head)
    if magic != MAGIC:
        raise ValueError(bad)
    return lrec


def scan_offsets(rec_path: str | os.PathLike) -> np.ndarray:
    """Offsets (N,) of every record of a ``.rec`` without an index: one pass over the frame headers.

    Keys are then 0 .. N-1 in file order (what im2rec and insightface write).
    """
    offsets = []
    size = os.path.getsize(rec_path)
    with open(rec_path, "rb") as f:
        pos = 0
        while pos < size:
            lrec = _frame_header(f, f"{rec_path}: truncated frame at byte {pos}", f"{rec_path}: bad magic at byte {pos}")
            if lrec >> 29 in (0, 1):  # a whole record or its first part starts here
                offsets.append(pos)
            length = lrec & ((1 << 29) - 1)
            pos += 8 + length + (-length % 4)
            f.seek(pos)
    return np.asarray(offsets, dtype=np.int64)


class RecordReader:
    """Random access to a ``.rec`` through its ``.idx`` (or a scan when there is none).

    Opening parses the index only; no record is read. Keys and offsets are int64 arrays (cheap
    to pickle into DataLoader workers); the file is opened lazily per process.
    """

    def __init__(self, path_prefix: str | os.PathLike) -> None:
        prefix = str(path_prefix)
        self.rec_path = prefix + ".rec"
        if os.path.exists(prefix + ".idx"):
            self._keys, self._offsets = read_index(prefix + ".idx")  # (N,), (N,)
        else:
            self._offsets = scan_offsets(self.rec_path)  # (N,)
            self._keys = np.arange(len(self._offsets), dtype=np.int64)  # (N,)
        n = len(self._keys)
        self.first_key = int(self._keys.min()) if n else 0
        dense = n > 0 and bool((self._keys == np.arange(self.first_key, self.first_key + n)).all())
        self._pos = None if dense or n == 0 else {int(k): i for i, k in enumerate(self._keys)}
        self._f = None
        self._pid = -1

    def _file(self):
        if self._f is None or self._pid != os.getpid():
            self._f, self._pid = open(self.rec_path, "rb"), os.getpid()
        return self._f

    def offset(self, key: int) -> int:
        """Byte offset of record ``key``; KeyError if the index has no such key."""
        if self._pos is not None:
            return int(self._offsets[self._pos[key]])
        i = key - self.first_key
        if not 0 <= i < len(self._offsets):
            raise KeyError(key)
        return int(self._offsets[i])

    def read(self, key: int) -> bytes:
        """The payload of record ``key`` (parts joined, magics restored)."""
        f = self._file()
        f.seek(self.offset(key))
        chunks = []
        while True:
            lrec = _frame_header(f, f"{self.rec_path}: truncated record {key}",
                                 f"{self.rec_path}: bad magic at record {key}")
            cflag, length = lrec >> 29, lrec & ((1 << 29) - 1)
            chunks.append(f.read(length))
            f.read(-length % 4)
            if cflag in (0, 3):
                return _MAGIC_BYTES.join(chunks)

    def keys(self) -> list[int]:
        """Keys in index order."""
        return self._keys.tolist()

    def key_array(self) -> np.ndarray:
        """Keys (N,) int64, sorted."""
        return np.sort(self._keys)

    def __len__(self) -> int:
        return len(self._keys)

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_f": None, "_pid": -1}
