"""Read any photo a user may hand us into one shape: HxWx3 uint8 RGB.

Every failure is an :class:`ImageError` (a ``ValueError``) subclass whose message names the
file and the reason, so a folder run can record it and move on:

* :class:`NotAnImageError` - the bytes are not an image format Pillow knows (or the file is empty).
* :class:`ImageTooLargeError` - the header claims more than ``max_pixels`` (default :data:`MAX_PIXELS`)
  pixels; refused from the header alone, before any pixel is decoded (decompression-bomb guard),
  per call: no process-wide Pillow setting is changed, so threads may decode at once.
* :class:`CorruptImageError` - a known format whose data is truncated or broken.

Handled on the way: EXIF orientation (the pixels are rotated so the photo is upright),
grayscale / palette / CMYK / LA, RGBA (composited on black), 16-bit PNG (top 8 bits kept).
"""

from __future__ import annotations

import io
import os
import re
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

MAX_PIXELS = 40_000_000
"""Largest image accepted, in pixels (40 MP)."""

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".gif", ".ppm", ".pgm")


class ImageError(ValueError):
    """A file that cannot be turned into an RGB image (the message says why)."""


class NotAnImageError(ImageError):
    """The file is not an image in any format we read."""


class CorruptImageError(ImageError):
    """The file is an image format we read, but its data is truncated or broken."""


class ImageTooLargeError(ImageError):
    """The image header claims more pixels than :data:`MAX_PIXELS`."""


def is_image_file(path: str | os.PathLike) -> bool:
    """True when the file name ends in an image extension we read (case-insensitive)."""
    return str(path).lower().endswith(IMAGE_EXTENSIONS)


def _to_rgb_array(img) -> np.ndarray:
    """A loaded PIL image of any mode -> HxWx3 uint8 RGB numpy array."""
    mode = img.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N"):
        a = np.asarray(img, dtype=np.uint16)  # (H, W) 16-bit
        a = (a >> 8).astype(np.uint8)  # (H, W) top 8 bits
        return np.repeat(a[:, :, None], 3, axis=2)  # (H, W, 3)
    if mode == "I":  # 32-bit int grey: PNG 16-bit often lands here
        a = np.asarray(img, dtype=np.int64)  # (H, W)
        a = (np.clip(a, 0, 65535) >> 8).astype(np.uint8) if a.max(initial=0) > 255 else a.astype(np.uint8)
        return np.repeat(a[:, :, None], 3, axis=2)  # (H, W, 3)
    if mode == "F":
        a = np.asarray(img, dtype=np.float32)  # (H, W)
        a = np.clip(a if a.max(initial=0) > 1.0 else a * 255.0, 0, 255).astype(np.uint8)
        return np.repeat(a[:, :, None], 3, axis=2)  # (H, W, 3)
    if mode in ("RGBA", "LA", "PA") or (mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (0, 0, 0, 255))
        img = Image.alpha_composite(background, rgba)  # transparent -> black
    if img.mode != "RGB":
        img = img.convert("RGB")
    return np.asarray(img, dtype=np.uint8).copy()  # (H, W, 3)


def decode_image(data: bytes, name: str = "<bytes>", max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """Decode image bytes to HxWx3 uint8 RGB (see the module docstring for the rules).

    Args:
        data: the encoded file content.
        name: what to call the source in error messages.
        max_pixels: refuse images whose header claims more pixels than this.

    Returns:
        (H, W, 3) uint8 RGB array, EXIF orientation applied.

    Raises:
        NotAnImageError, CorruptImageError, ImageTooLargeError.
    """
    if not data:
        raise NotAnImageError(f"{name}: empty file, not an image")
    # No process-wide Pillow setting is touched (threads decode at once): our limit is checked from
    # the header here; Pillow's own bomb guard (2 x Image.MAX_IMAGE_PIXELS, ~179 MP) stays as it is.
    try:
        img = Image.open(io.BytesIO(data))
    except Image.DecompressionBombError as exc:
        pixels = re.search(r"\((\d+) pixels\)", str(exc))
        size = f"{int(pixels.group(1)) / 1e6:.3g} MP" if pixels else "its size"
        raise ImageTooLargeError(f"{name}: {size} exceeds the {max_pixels / 1e6:.3g} MP limit; "
                                 "refused before decoding") from None
    except UnidentifiedImageError as exc:
        raise NotAnImageError(f"{name}: not an image Pillow can identify") from exc
    except (OSError, SyntaxError, ValueError) as exc:  # broken headers
        raise CorruptImageError(f"{name}: broken image header ({exc})") from exc
    w, h = img.size
    if w * h > max_pixels:
        raise ImageTooLargeError(
            f"{name}: {w}x{h} = {w * h / 1e6:.3g} MP exceeds the {max_pixels / 1e6:.3g} MP limit; "
            "refused before decoding"
        )
    if w == 0 or h == 0:
        raise CorruptImageError(f"{name}: zero-sized image {w}x{h}")
    try:
        img.load()
        img = ImageOps.exif_transpose(img)
        return _to_rgb_array(img)
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise CorruptImageError(f"{name}: corrupt or truncated {img.format} data ({exc})") from exc


def load_image(path: str | os.PathLike, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """Read an image file to HxWx3 uint8 RGB (EXIF-rotated; grey/RGBA/16-bit handled).

    Raises:
        FileNotFoundError: no such file.
        ImageError: a subclass naming why the file is not a usable image.
    """
    p = Path(path)
    if p.is_dir():
        raise NotAnImageError(f"{p}: is a directory, not an image")
    data = p.read_bytes()  # FileNotFoundError propagates as is
    return decode_image(data, name=str(p), max_pixels=max_pixels)
