"""Pure-Python RecordIO: byte-exact round trips, magic splitting, insightface layout."""

from __future__ import annotations

import io
import struct
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from cqa_core.data.recordfile import MAGIC, IRHeader, RecordReader, RecordWriter, pack, unpack
from cqa_core.data.recordio import RecordIODataset, write_face_folder

MAGIC_BYTES = struct.pack("<I", MAGIC)


def test_round_trip_is_byte_exact(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    payloads = [rng.bytes(n) for n in (0, 1, 3, 4, 5, 1000)]
    payloads += [b"ab" + MAGIC_BYTES + b"cd", MAGIC_BYTES * 3, b"abcd" + MAGIC_BYTES + b"xyz" + MAGIC_BYTES]
    with RecordWriter(tmp_path / "t") as w:
        for k, p in enumerate(payloads):
            w.write(k, p)
    r = RecordReader(tmp_path / "t")
    assert [r.read(k) for k in range(len(payloads))] == payloads
    assert (tmp_path / "t.rec").stat().st_size % 4 == 0


def test_on_disk_framing_by_hand(tmp_path: Path) -> None:
    with RecordWriter(tmp_path / "t") as w:
        w.write(7, b"hello")
        w.write(9, b"abcd" + MAGIC_BYTES + b"ef")  # aligned magic -> two parts
    raw = (tmp_path / "t.rec").read_bytes()
    assert raw[:16] == MAGIC_BYTES + struct.pack("<I", 5) + b"hello\0\0\0"
    second = raw[16:]
    assert second[:12] == MAGIC_BYTES + struct.pack("<I", (1 << 29) | 4) + b"abcd"
    assert second[12:24] == MAGIC_BYTES + struct.pack("<I", (3 << 29) | 2) + b"ef\0\0"
    assert (tmp_path / "t.idx").read_text() == "7\t0\n9\t16\n"


def test_pack_unpack_scalar_and_array_labels() -> None:
    h, body = unpack(pack(IRHeader(0, 3.0, 5, 0), b"JPEG"))
    assert (h.flag, h.label, h.id, body) == (0, 3.0, 5, b"JPEG")
    h, body = unpack(pack(IRHeader(0, np.array([1.0, 2.0]), 0, 0), b"x"))
    assert h.flag == 2 and h.label.tolist() == [1.0, 2.0] and body == b"x"


def test_insightface_layout_dataset(tmp_path: Path) -> None:
    colours = {"id0": (255, 0, 0), "id1": (0, 0, 255)}
    for name, rgb in colours.items():
        (tmp_path / "f" / name).mkdir(parents=True)
        for i in range(2):
            Image.fromarray(np.full((112, 112, 3), rgb, np.uint8)).save(tmp_path / "f" / name / f"{i}.png")
    assert write_face_folder(tmp_path / "f", tmp_path / "train") == 4
    ds = RecordIODataset(tmp_path / "train")
    assert len(ds) == 4 and ds.num_classes == 2 and ds.targets == [0, 0, 1, 1]
    img, label = ds[2]
    assert img.dtype == torch.uint8 and img.shape == (3, 112, 112) and label == 1
    assert img[:, 0, 0].tolist() == [0, 0, 255]  # RGB out
    r = RecordReader(tmp_path / "train")
    hdr, _ = unpack(r.read(0))
    assert hdr.label.tolist() == [5.0, 7.0]  # identities at keys 5, 6
    assert unpack(r.read(6))[0].label.tolist() == [3.0, 5.0]  # id1 = images 3, 4
    assert unpack(r.read(1))[1] == (tmp_path / "f" / "id0" / "0.png").read_bytes()  # stored as is


def test_bgr_encoded_jpeg_reads_as_rgb(tmp_path: Path) -> None:
    import cv2

    bgr = np.zeros((112, 112, 3), np.uint8)
    bgr[:, :, 2] = 250  # red, in OpenCV's BGR order, as insightface's packer would hold it
    ok, enc = cv2.imencode(".jpg", bgr)
    with RecordWriter(tmp_path / "r") as w:
        w.write(0, pack(IRHeader(0, 0.0, 0, 0), enc.tobytes()))
    img, _ = RecordIODataset(tmp_path / "r")[0]
    assert img[0].float().mean() > 240 and img[2].float().mean() < 10
    assert np.asarray(Image.open(io.BytesIO(enc.tobytes())))[0, 0, 0] > 240  # any decoder agrees
