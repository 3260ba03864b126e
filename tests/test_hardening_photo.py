"""One small file must not cost the analysis service gigabytes.

A 6000 x 6000 PNG of a few hundred KB is under the 40 MP decoding limit; analysed at full size
its answer was 684 MB and the service's memory grew by gigabytes. The service now shrinks every
photo to a 512 px longer side before its analysis (``workbench.photo``) and refuses an
answer over its byte limit in one line. The PNG goes through the real service (an ``Engine`` with
the default model, Starlette's in-process client) while a thread samples the process's memory.
"""

from __future__ import annotations

import base64
import ctypes
import ctypes.util
import gc
import io
import threading

import numpy as np
import psutil
import pytest
from PIL import Image
from starlette.testclient import TestClient

from cqa_core.explain.result import Photo
from cqa_core.settings import Settings
from workbench.photo import MAX_PHOTO_SIDE, shrink, shrunk
from workbench.service.app import AnalysisService, create_app
from workbench.service.engine import Engine
from workbench.service.guard import Guard, Limits
from workbench.wire import Face, decode

SIDE = 6000
LIBC = ctypes.CDLL(ctypes.util.find_library("c")) if ctypes.util.find_library("c") else None


def big_png() -> bytes:
    """A 6000 x 6000 RGB PNG that compresses to a few hundred KB (smooth gradients, a dark oval)."""
    y, x = np.mgrid[0:SIDE, 0:SIDE].astype(np.float32) / SIDE  # (H, W) in [0, 1)
    oval = ((x - 0.5) / 0.25) ** 2 + ((y - 0.5) / 0.35) ** 2 < 1.0  # (H, W) a face-sized blob
    rgb = np.stack([x * 255, y * 255, np.where(oval, 60, 200)], -1).astype(np.uint8)  # (H, W, 3)
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, "PNG", optimize=False)
    return buf.getvalue()


def test_shrink_keeps_small_photos_and_renames_shrunk_ones():
    small = np.zeros((250, 200, 3), np.uint8)
    assert shrink(small) is small
    wide = np.zeros((100, 2048, 3), np.uint8)
    assert shrink(wide).shape == (25, 512, 3)  # 2048 -> 512: a quarter, both sides
    face = Face("a", Photo(small, "d" * 40), "center")
    assert shrunk(face) is face  # small: same digest, same stored landmarks
    big = shrunk(Face("b", Photo(np.zeros((1024, 768, 3), np.uint8), "d" * 40), "center"))
    assert big.source.pixels.shape == (512, 384, 3) and big.source.digest != "d" * 40 and len(big.source.digest) == 40
    assert shrunk(Face("u", np.zeros((600, 300, 3), np.uint8))).source.shape == (512, 256, 3)  # an upload's pixels


class Peak:
    """The process's largest resident memory while the block runs, sampled every 20 ms."""

    def __enter__(self) -> Peak:
        self.proc, self.stop = psutil.Process(), threading.Event()
        self.before = self.peak = self.proc.memory_info().rss
        self.thread = threading.Thread(target=self._sample, daemon=True)
        self.thread.start()
        return self

    def _sample(self) -> None:
        while not self.stop.wait(0.02):
            self.peak = max(self.peak, self.proc.memory_info().rss)

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.thread.join()
        gc.collect()
        if LIBC is not None:  # glibc keeps freed pages in its arenas: hand them back, so RSS counts what is held
            LIBC.malloc_trim(0)
        self.after = self.proc.memory_info().rss


@pytest.mark.slow
def test_a_6000px_png_costs_megabytes_not_gigabytes():
    data = big_png()
    assert len(data) < 2 * 2**20  # a small file ...
    service = AnalysisService(Engine(Settings(torch_threads=1)))
    client = TestClient(create_app(service, Guard(None)))
    face = {"file": base64.b64encode(data).decode(), "name": "huge.png", "align": "center"}
    client.post("/analyse", json={"face": {**face, "file": base64.b64encode(_png(64)).decode()}})  # model warm
    with Peak() as mem:
        r = client.post("/analyse", json={"face": face, "methods": ["gradcam"]})
    assert r.status_code == 200, r.text
    fa = decode(r.content)
    assert max(fa.photo.shape[:2]) == MAX_PHOTO_SIDE  # ... analysed at 512 px, never at 6000
    assert all(max(np.asarray(a).shape[:2]) <= MAX_PHOTO_SIDE for a in fa.maps.values())
    assert len(r.content) < 16 * 2**20, len(r.content)  # was 684 MB
    grown, kept = (mem.peak - mem.before) / 2**20, (mem.after - mem.before) / 2**20
    assert grown < 800, f"peak memory grew {grown:.0f} MB"  # was 2.4 GB (the decoded photo is 103 MB)
    assert kept < 150, f"memory kept {kept:.0f} MB"  # was 1.5 GB, cached


def test_an_answer_over_the_byte_limit_is_refused_in_one_line():
    service = AnalysisService(Engine(Settings(torch_threads=1)))
    client = TestClient(create_app(service, Guard(None, limits=Limits(max_answer=100_000))))
    r = client.post("/analyse", json={"face": {"file": base64.b64encode(_png(300)).decode(), "align": "center"}})
    assert r.status_code == 507
    assert r.json()["error"].endswith("MB, over this service's 0 MB answer limit") and "\n" not in r.json()["error"]


def test_one_face_with_maps_gets_its_maps():
    """A single face asking for a map method (the Face tab's 'attention') is one job with its methods,
    not a batched face without maps (the dashboard's click answered KeyError 'attention')."""
    client = TestClient(create_app(AnalysisService(Engine(Settings(torch_threads=1))), Guard(None)))
    face = {"file": base64.b64encode(_png(120)).decode(), "align": "center"}
    r = client.post("/analyse", json={"face": face, "methods": ["attention"]})
    assert r.status_code == 200, r.text
    assert "attention" in decode(r.content).maps
    assert client.post("/analyse", json={"face": face, "methods": []}).status_code == 200  # no maps: batched


def test_the_shared_cache_is_bounded_in_bytes():
    service = AnalysisService(Engine(Settings(torch_threads=1)), cache_bytes=6 * 2**20)
    client = TestClient(create_app(service, Guard(None)))
    sizes = []
    for seed in range(4):  # four different 400 px photos, each analysis a few MB
        r = client.post("/analyse", json={"face": {"file": base64.b64encode(_png(400, seed)).decode(), "align": "center"}})
        assert r.status_code == 200, r.text
        sizes.append(len(r.content))
    stats = client.get("/stats").json()
    assert sum(sizes) > 6 * 2**20, sizes  # the four would not fit ...
    assert 0 < stats["cached_bytes"] <= 6 * 2**20 and stats["cached"] < 4, stats  # ... so the oldest went


def _png(side: int, seed: int = 0) -> bytes:
    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (side, side, 3), dtype=np.uint8)).save(buf, "PNG")
    return buf.getvalue()
