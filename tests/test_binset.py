"""insightface .bin verification sets, read with a restricted unpickler."""

from __future__ import annotations

import hashlib
import os
import pickle
from pathlib import Path

import numpy as np
import pytest

from cqa_core.data.binset import BinFormatError, load_bin, load_bin_raw, restricted_loads, write_bin


@pytest.mark.data
def test_fixture_loads(shared_data: Path) -> None:
    path = shared_data / "fixtures" / "small_lfw.bin"
    assert hashlib.md5(path.read_bytes()).hexdigest() == "e21d92f67e6326bcc7778a39939b65ae"
    images, issame = load_bin(path)
    assert images.shape == (20, 112, 112, 3) and images.dtype == np.uint8
    assert issame.tolist() == [True] * 10
    r, g, b = images.reshape(-1, 3).mean(0)
    assert r > g > b  # skin tones: the channels come out RGB, not BGR
    raw, _ = load_bin_raw(path)
    assert raw[0][:2] == b"\xff\xd8"  # JPEG


def test_round_trip_bytes_and_arrays(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    imgs = [np.full((112, 112, 3), (i * 20, 100, 200 - i * 20), np.uint8) for i in range(4)]
    for as_arrays in (True, False):
        p = write_bin(tmp_path / f"s{as_arrays}.bin", imgs, [True, False], as_arrays=as_arrays)
        images, issame = load_bin(p)
        assert issame.tolist() == [True, False]
        assert np.abs(images.astype(int) - np.stack(imgs)).max() <= 3
    small = [(rng.random((60, 60, 3)) * 255).astype(np.uint8) for _ in range(2)]
    images, _ = load_bin(write_bin(tmp_path / "small.bin", small, [False]))
    assert images.shape == (2, 112, 112, 3)  # resized to 112


class _Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


def test_restricted_unpickler_refuses_code(tmp_path: Path) -> None:
    with pytest.raises(pickle.UnpicklingError, match="posix.system|os.system|refused"):
        restricted_loads(pickle.dumps(([_Evil()], [True])))
    p = tmp_path / "evil.bin"
    p.write_bytes(pickle.dumps(([b"x", _Evil()], [True])))
    with pytest.raises(BinFormatError, match="evil.bin: refused to load (posix|os).system"):
        load_bin(p)
    assert restricted_loads(pickle.dumps(np.arange(3), protocol=2)).tolist() == [0, 1, 2]
    assert restricted_loads(pickle.dumps(b"\x00\xffab", protocol=2)) == b"\x00\xffab"  # _codecs.encode


def test_wrong_shapes_are_clear(tmp_path: Path) -> None:
    p = tmp_path / "bad.bin"
    p.write_bytes(pickle.dumps(([b"a", b"b", b"c"], [True])))
    with pytest.raises(ValueError, match="3 images for 1 pairs"):
        load_bin_raw(p)


def test_truncated_and_garbage_files_are_bin_format_errors(tmp_path: Path) -> None:
    good = write_bin(tmp_path / "good.bin", [np.full((112, 112, 3), 9, np.uint8)] * 2, [True]).read_bytes()
    cases = {"trunc.bin": good[: len(good) // 2], "text.bin": b"hello, not a pickle\n", "empty.bin": b"",
             "int.bin": pickle.dumps(7)}
    for name, data in cases.items():
        (tmp_path / name).write_bytes(data)
        with pytest.raises(BinFormatError, match=name):
            load_bin_raw(tmp_path / name)
    with pytest.raises(FileNotFoundError, match="missing.bin"):
        load_bin_raw(tmp_path / "missing.bin")
