"""InsightFace / MXNet RecordIO (``train.rec`` + ``train.idx``) in pure Python, no mxnet.

On-disk record (dmlc-core ``recordio``): uint32 magic ``0xced7230a``, uint32 ``lrec`` (upper 3
bits = continuation flag, lower 29 = length), the payload, zero padding to 4 bytes. A payload
that contains the magic at a 4-aligned offset is split there into parts (flag 1 = first,
2 = middle, 3 = last; the magic itself is dropped and restored on reading). The ``.idx`` file
has one ``key\toffset`` line per record.

Payload (``mx.recordio.pack``): header ``struct IfQQ`` = (flag, label, id, id2), then ``flag``
float32 labels when flag > 0, then the encoded image. insightface's ``train.rec`` starts with
record 0 whose labels are ``(first identity record, end)``; images are records 1 .. first-1.

Colour: insightface packs JPEGs made with ``cv2.imencode`` from BGR arrays, which are ordinary,
correctly coloured JPEG files; mxnet decodes them to RGB, and so do we (cv2 BGR -> RGB). Items
are ``(uint8 (3, 112, 112) RGB tensor, int label)``, the :class:`FaceFolder` contract.
"""

from __future__ import annotations

import os
import struct
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch

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


class RecordReader:
    """Random access to a ``.rec`` through its ``.idx``; the file is opened lazily per process
    (safe with DataLoader workers)."""

    def __init__(self, path_prefix: str | os.PathLike) -> None:
        prefix = str(path_prefix)
        self.rec_path = prefix + ".rec"
        self.offsets: dict[int, int] = {}
        with open(prefix + ".idx") as f:
            for line in f:
                if line.strip():
                    k, off = line.split()
                    self.offsets[int(k)] = int(off)
        self._f = None
        self._pid = -1

    def _file(self):
        if self._f is None or self._pid != os.getpid():
            self._f, self._pid = open(self.rec_path, "rb"), os.getpid()
        return self._f

    def read(self, key: int) -> bytes:
        """The payload of record ``key`` (parts joined, magics restored)."""
        f = self._file()
        f.seek(self.offsets[key])
        chunks = []
        while True:
            head = f.read(8)
            if len(head) < 8:
                raise ValueError(f"{self.rec_path}: truncated record {key}")
            magic, lrec = struct.unpack("<II", head)
            if magic != MAGIC:
                raise ValueError(f"{self.rec_path}: bad magic at record {key}")
            cflag, length = lrec >> 29, lrec & ((1 << 29) - 1)
            chunks.append(f.read(length))
            f.read(-length % 4)
            if cflag in (0, 3):
                return _MAGIC_BYTES.join(chunks)

    def keys(self) -> list[int]:
        return list(self.offsets)

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_f": None, "_pid": -1}


class RecordIODataset(torch.utils.data.Dataset):
    """insightface ``train.rec``: items ``(uint8 (3, 112, 112) RGB, int label)``.

    With a header record 0 (flag > 0) the images are keys 1 .. label[0]-1; otherwise every key.
    """

    def __init__(self, path_prefix: str | os.PathLike, decoder: str = "cv2") -> None:
        self.reader = RecordReader(path_prefix)
        self.decoder = decoder
        keys = sorted(self.reader.keys())
        header, _ = unpack(self.reader.read(keys[0])) if keys else (None, b"")
        if header is not None and header.flag > 0 and keys[0] == 0:
            first, end = int(header.label[0]), int(header.label[1])
            self.keys = list(range(1, first))
            # Labels from the identity records (one small read per identity, not per image).
            labels = [0] * len(self.keys)
            for c, key in enumerate(range(first, end)):
                a, b = (int(v) for v in unpack(self.reader.read(key))[0].label[:2])
                labels[a - 1:b - 1] = [c] * (b - a)
            self.num_classes = end - first
        else:
            self.keys = keys
            labels = [self._label(unpack(self.reader.read(k))[0]) for k in self.keys]
            self.num_classes = (max(labels) + 1) if labels else 0
        self.targets = labels

    @staticmethod
    def _label(h: IRHeader) -> int:
        return int(h.label[0] if isinstance(h.label, np.ndarray) else h.label)

    def __len__(self) -> int:
        return len(self.keys)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        from cqa_core.data.datasets import decode_chw

        header, img = unpack(self.reader.read(self.keys[index]))
        return decode_chw(img, self.decoder), self._label(header)  # (3, H, W) uint8 RGB


def write_face_folder(root: str | os.PathLike, path_prefix: str | os.PathLike) -> int:
    """Pack a FaceFolder (``Identity/img.jpg``) into insightface layout; returns #images.

    Files are copied byte for byte (no re-encoding); identity records follow the images.
    """
    from cqa_core.data.datasets import FaceFolder

    ds = FaceFolder(root)
    n = len(ds)
    with RecordWriter(path_prefix) as w:
        first_id = n + 1
        w.write(0, pack(IRHeader(0, np.array([first_id, first_id + ds.num_classes], np.float32), 0, 0), b""))
        ranges: dict[int, list[int]] = {}
        for i, (path, label) in enumerate(ds.samples, start=1):
            w.write(i, pack(IRHeader(0, float(label), i, 0), Path(path).read_bytes()))
            ranges.setdefault(label, [i, i + 1])[1] = i + 1
        for c in range(ds.num_classes):
            a, b = ranges[c]
            w.write(first_id + c, pack(IRHeader(0, np.array([a, b], np.float32), 0, 0), b""))
    return n
