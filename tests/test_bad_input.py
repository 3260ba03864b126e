"""Photos users really hand us: each is read correctly or refused with a specific error, and a
folder run records the bad ones and carries on."""

from __future__ import annotations

import csv
import io
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cqa_core.data.align import (
    CorruptImageError,
    ImageError,
    ImageTooLargeError,
    NoFaceError,
    NotAnImageError,
    align_image,
    load_image,
)


def _jpeg(a: np.ndarray, **kw) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, format="JPEG", quality=95, **kw)
    return buf.getvalue()


def _huge_png_header(w: int, h: int) -> bytes:
    """A ~60-byte PNG whose IHDR claims w x h RGB pixels (never allocated)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 10)) + chunk(b"IEND", b"")


@pytest.fixture()
def photo() -> np.ndarray:
    a = np.zeros((40, 60, 3), np.uint8)
    a[:, :30] = (220, 30, 30)  # left half red
    a[:, 30:] = (30, 30, 220)  # right half blue
    return a


def test_truncated_jpeg(tmp_path: Path, photo: np.ndarray) -> None:
    data = _jpeg(photo)
    (tmp_path / "t.jpg").write_bytes(data[: len(data) // 2])
    with pytest.raises(CorruptImageError, match="t.jpg"):
        load_image(tmp_path / "t.jpg")


def test_corrupt_header_and_non_image(tmp_path: Path) -> None:
    (tmp_path / "c.jpg").write_bytes(b"\xff\xd8\xff\xe0" + b"\x00" * 50)
    (tmp_path / "notes.jpg").write_text("this is a text file, not a photo\n")
    (tmp_path / "empty.png").write_bytes(b"")
    for name in ("c.jpg", "notes.jpg", "empty.png"):
        with pytest.raises(ImageError) as info:
            load_image(tmp_path / name)
        assert name in str(info.value)
    with pytest.raises(NotAnImageError):
        load_image(tmp_path / "notes.jpg")
    with pytest.raises(FileNotFoundError):
        load_image(tmp_path / "missing.jpg")


def test_huge_image_refused_before_decoding(tmp_path: Path) -> None:
    p = tmp_path / "bomb.png"
    p.write_bytes(_huge_png_header(20000, 20000))
    assert p.stat().st_size < 100
    with pytest.raises(ImageTooLargeError, match="400 MP exceeds the 40 MP limit"):
        load_image(p)
    assert Image.MAX_IMAGE_PIXELS is not None  # Pillow's own guard is never changed


def test_grayscale_rgba_and_palette(tmp_path: Path) -> None:
    Image.fromarray(np.full((30, 20), 77, np.uint8)).save(tmp_path / "g.png")
    g = load_image(tmp_path / "g.png")
    assert g.shape == (30, 20, 3) and (g == 77).all()
    rgba = np.zeros((10, 10, 4), np.uint8)
    rgba[..., :3] = (200, 100, 50)
    rgba[:5, :, 3] = 255  # top half opaque, bottom transparent
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    a = load_image(tmp_path / "a.png")
    assert a.shape == (10, 10, 3) and a[0, 0].tolist() == [200, 100, 50] and a[9, 9].tolist() == [0, 0, 0]
    Image.fromarray(np.full((8, 8, 3), (10, 200, 30), np.uint8)).convert("P").save(tmp_path / "p.gif")
    assert load_image(tmp_path / "p.gif").shape == (8, 8, 3)


def test_16bit_png_grey_and_colour(tmp_path: Path) -> None:
    import cv2

    Image.fromarray(np.full((12, 16), 0x8000, np.uint16)).save(tmp_path / "g16.png")
    g = load_image(tmp_path / "g16.png")
    assert g.dtype == np.uint8 and g.shape == (12, 16, 3) and (g == 128).all()
    bgr16 = np.zeros((12, 16, 3), np.uint16)
    bgr16[..., 2] = 65535  # red
    cv2.imwrite(str(tmp_path / "c16.png"), bgr16)
    c = load_image(tmp_path / "c16.png")
    assert c.dtype == np.uint8 and c[0, 0].tolist() == [255, 0, 0]


def test_exif_rotation_is_applied(tmp_path: Path, photo: np.ndarray) -> None:
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    (tmp_path / "r.jpg").write_bytes(_jpeg(photo, exif=exif.tobytes()))
    img = load_image(tmp_path / "r.jpg")
    assert img.shape == (60, 40, 3)  # upright: portrait
    assert img[5, 20, 0] > 180 and img[55, 20, 2] > 180  # the red left half is now on top


def test_no_face_is_specific(tmp_path: Path) -> None:
    blank = np.full((160, 160, 3), 120, np.uint8)
    with pytest.raises(NoFaceError):
        align_image(blank, fallback=None)
    assert align_image(blank).method == "center"


def test_folder_run_survives_every_bad_file(tmp_path: Path, photo: np.ndarray) -> None:
    from cqa_core.data.align_run import align_folder

    src = tmp_path / "src" / "person"
    src.mkdir(parents=True)
    data = _jpeg(photo)
    (src / "truncated.jpg").write_bytes(data[:300])
    (src / "text.jpg").write_text("hello")
    (src / "bomb.png").write_bytes(_huge_png_header(20000, 20000))
    Image.fromarray(np.full((150, 150), 90, np.uint8)).save(src / "grey.png")
    (src / "ok.jpg").write_bytes(_jpeg(np.full((112, 112, 3), 50, np.uint8)))  # already aligned
    s = align_folder(tmp_path / "src", tmp_path / "out", fallback="center", workers=1, progress=False)
    assert s["total"] == 5 and s["errors"] == 3 and s["methods"] == {"center": 1, "identity": 1}
    misses = {r["path"]: r for r in csv.DictReader(open(tmp_path / "out" / "misses.csv"))}
    assert misses["person/truncated.jpg"]["reason"].startswith("CorruptImageError")
    assert misses["person/text.jpg"]["reason"].startswith("NotAnImageError")
    assert misses["person/bomb.png"]["reason"].startswith("ImageTooLargeError")
    assert misses["person/grey.png"]["action"] == "center"
    assert (tmp_path / "out" / "person" / "ok.jpg").exists()
