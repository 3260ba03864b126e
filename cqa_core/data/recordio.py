"""InsightFace / MXNet RecordIO as a torch dataset, and a face folder packed into that layout.

The file format (records, index, payload header) is :mod:`cqa_core.data.recordfile`.

Colour: insightface packs JPEGs made with ``cv2.imencode`` from BGR arrays, which are ordinary,
correctly coloured JPEG files; mxnet decodes them to RGB, and so do we (cv2 BGR -> RGB). Items
are ``(uint8 (3, 112, 112) RGB tensor, int label)``, the :class:`FaceFolder` contract.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from cqa_core.data.datasets import FaceFolder, decode_chw
from cqa_core.data.recordfile import IRHeader, RecordReader, RecordWriter, pack, unpack


class RecordIODataset(torch.utils.data.Dataset):
    """insightface ``train.rec``: items ``(uint8 (3, 112, 112) RGB, int label)``.

    With a header record 0 (flag > 0) the images are keys 1 .. label[0]-1 and there are
    label[1] - label[0] classes: opening reads that one record (O(1), whatever N). Without one,
    every key is an image and ``num_classes`` / ``targets`` need every record's label: they are
    read on first use (one pass), not on opening.
    """

    def __init__(self, path_prefix: str | os.PathLike, decoder: str = "cv2") -> None:
        self.reader = RecordReader(path_prefix)
        self.decoder = decoder
        self._targets: list[int] | None = None
        self._num_classes: int | None = None
        self._id_first = 0  # key of the first identity record (insightface layout)
        first = self.reader.first_key
        header = unpack(self.reader.read(first))[0] if len(self.reader) else None
        if header is not None and header.flag > 0 and first == 0:
            self._id_first, end = int(header.label[0]), int(header.label[1])
            self.keys: range | np.ndarray = range(1, self._id_first)
            self._num_classes = end - self._id_first
        else:
            self.keys = self.reader.key_array()

    @property
    def num_classes(self) -> int:
        if self._num_classes is None:
            self._num_classes = (max(self.targets) + 1) if len(self) else 0
        return self._num_classes

    @property
    def targets(self) -> list[int]:
        """Label of every item (read on first use: one read per identity, or per image without a header)."""
        if self._targets is None:
            if self._id_first:
                labels = [0] * len(self.keys)
                for c, key in enumerate(range(self._id_first, self._id_first + self.num_classes)):
                    a, b = (int(v) for v in unpack(self.reader.read(key))[0].label[:2])
                    labels[a - 1:b - 1] = [c] * (b - a)
            else:
                labels = [self._label(unpack(self.reader.read(int(k)))[0]) for k in self.keys]
            self._targets = labels
        return self._targets

    @staticmethod
    def _label(h: IRHeader) -> int:
        return int(h.label[0] if isinstance(h.label, np.ndarray) else h.label)

    def __len__(self) -> int:
        return len(self.keys)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        header, img = unpack(self.reader.read(int(self.keys[index])))
        return decode_chw(img, self.decoder), self._label(header)  # (3, H, W) uint8 RGB


def write_face_folder(root: str | os.PathLike, path_prefix: str | os.PathLike) -> int:
    """Pack a FaceFolder (``Identity/img.jpg``) into insightface layout; returns #images.

    Files are copied byte for byte (no re-encoding); identity records follow the images.
    """
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
