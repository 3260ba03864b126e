"""RecordIO opens from its ``.idx`` with O(1) record reads, and scans when there is no index (issue 14, item 4)."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest

from cqa_core.data import recordfile
from cqa_core.data.recordfile import (
    MAGIC,
    IRHeader,
    RecordReader,
    RecordWriter,
    pack,
    read_index,
    scan_offsets,
)
from cqa_core.data.recordio import RecordIODataset


def write_insightface(prefix: Path, per_class: list[int]) -> None:
    """Header record 0, then images 1 .. n (label = class, payload = b'img<key>'), then identity records."""
    n = sum(per_class)
    first = n + 1
    with RecordWriter(prefix) as w:
        w.write(0, pack(IRHeader(0, np.array([first, first + len(per_class)], np.float32), 0, 0), b""))
        key = 1
        for c, count in enumerate(per_class):
            for _ in range(count):
                w.write(key, pack(IRHeader(0, float(c), key, 0), f"img{key}".encode()))
                key += 1
        start = 1
        for c, count in enumerate(per_class):
            w.write(first + c, pack(IRHeader(0, np.array([start, start + count], np.float32), 0, 0), b""))
            start += count


@pytest.fixture
def reads(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Keys of every record read through RecordReader.read, in order."""
    seen: list[int] = []
    original = RecordReader.read

    def counting(self: RecordReader, key: int) -> bytes:
        seen.append(key)
        return original(self, key)

    monkeypatch.setattr(RecordReader, "read", counting)
    return seen


@pytest.mark.parametrize("per_class", [[2, 1], [300, 200, 500]])
def test_open_reads_one_record_whatever_the_size(tmp_path: Path, reads: list[int], per_class: list[int]) -> None:
    write_insightface(tmp_path / "t", per_class)
    ds = RecordIODataset(tmp_path / "t")
    assert reads == [0]  # the header record only, for 3 images as for 1000
    assert len(ds) == sum(per_class) and ds.num_classes == len(per_class)
    assert reads == [0]
    assert ds.targets == [c for c, n in enumerate(per_class) for _ in range(n)]  # now the identity records
    assert len(reads) == 1 + len(per_class)


def test_plain_layout_reads_labels_on_first_use(tmp_path: Path, reads: list[int]) -> None:
    with RecordWriter(tmp_path / "p") as w:
        for k, label in enumerate([0, 2, 1, 2]):
            w.write(k, pack(IRHeader(0, float(label), k, 0), b"x"))
    ds = RecordIODataset(tmp_path / "p")
    assert reads == [0] and len(ds) == 4
    assert ds.num_classes == 3 and ds.targets == [0, 2, 1, 2]
    assert reads == [0, 0, 1, 2, 3]


def test_read_index_parses_tabs_and_newlines(tmp_path: Path) -> None:
    (tmp_path / "a.idx").write_text("7\t0\n9\t16\n")
    keys, offsets = read_index(tmp_path / "a.idx")
    assert keys.tolist() == [7, 9] and offsets.tolist() == [0, 16]
    (tmp_path / "b.idx").write_text("7\t0\n9\tsixteen\n")
    with pytest.raises(ValueError, match="not a RecordIO index"):
        read_index(tmp_path / "b.idx")


def test_sparse_keys_and_missing_key(tmp_path: Path) -> None:
    with RecordWriter(tmp_path / "s") as w:
        w.write(7, b"hello")  # 16 bytes framed
        w.write(9, b"abc")
    r = RecordReader(tmp_path / "s")
    assert (r.offset(7), r.offset(9)) == (0, 16)
    assert r.read(9) == b"abc" and r.keys() == [7, 9]
    with pytest.raises(KeyError):
        r.read(8)


def test_scan_without_index_finds_the_same_offsets(tmp_path: Path) -> None:
    magic = struct.pack("<I", MAGIC)
    payloads = [b"a", b"abcd" + magic + b"ef", magic * 3, b"", b"xyz"]  # records 1 and 2 span several frames
    with RecordWriter(tmp_path / "m") as w:
        for k, p in enumerate(payloads):
            w.write(k, p)
    indexed = RecordReader(tmp_path / "m")
    (tmp_path / "m.idx").unlink()
    offsets = scan_offsets(tmp_path / "m.rec")
    assert offsets.tolist() == [indexed.offset(k) for k in range(5)]
    assert offsets.tolist() == [0, 12, 36, 68, 76]  # 8+1+3 pad | 2 frames 12+12 | 4 empty frames 4*8 | 8 | 8+3+1
    scanned = RecordReader(tmp_path / "m")
    assert [scanned.read(k) for k in range(5)] == payloads


def test_dataset_without_index_matches_indexed(tmp_path: Path) -> None:
    write_insightface(tmp_path / "t", [2, 3])
    with_idx = RecordIODataset(tmp_path / "t")
    keys = [int(k) for k in with_idx.keys]
    (tmp_path / "t.idx").unlink()
    without = RecordIODataset(tmp_path / "t")
    assert [int(k) for k in without.keys] == keys and without.targets == [0, 0, 1, 1, 1]
    assert [without.reader.read(k) for k in keys] == [with_idx.reader.read(k) for k in keys]


def test_truncated_rec_is_a_clear_error(tmp_path: Path) -> None:
    with RecordWriter(tmp_path / "x") as w:
        w.write(0, b"abcdefgh")
    (tmp_path / "x.rec").write_bytes((tmp_path / "x.rec").read_bytes()[:6])
    with pytest.raises(ValueError, match="truncated"):
        recordfile.scan_offsets(tmp_path / "x.rec")
