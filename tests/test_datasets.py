"""FaceFolder, decoders, cache helpers and ensure_aligned."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from cqa_core.data import cache_place, data_place, repo_root
from cqa_core.data.datasets import (
    MARKER,
    FaceFolder,
    aligned_dir,
    decode_chw,
    ensure_aligned,
    random_flip,
)


def _save(path: Path, rgb: tuple[int, int, int], size: int = 112, fmt: str = "PNG") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((size, size, 3), rgb, np.uint8)).save(path, format=fmt)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_face_folder_labels_and_rgb_order(tmp_path: Path) -> None:
    _save(tmp_path / "bob" / "1.png", (255, 0, 0))
    _save(tmp_path / "bob" / "2.png", (0, 255, 0))
    _save(tmp_path / "alice" / "1.png", (0, 0, 255))
    (tmp_path / "alignment.csv").write_text("path\n")  # root files are ignored
    (tmp_path / "alice" / "notes.txt").write_text("x")
    for decoder in ("cv2", "torchvision", "pil"):
        ds = FaceFolder(tmp_path, decoder=decoder)
        assert ds.classes == ["alice", "bob"] and ds.num_classes == 2 and len(ds) == 3
        assert ds.targets == [0, 1, 1]
        img, label = ds[0]
        assert img.dtype == torch.uint8 and img.shape == (3, 112, 112) and label == 0
        assert img[:, 5, 5].tolist() == [0, 0, 255]  # blue stays blue: RGB out
        assert ds[1][0][:, 0, 0].tolist() == [255, 0, 0]


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_decoders_agree_on_jpeg() -> None:
    rng = np.random.default_rng(0)
    a = (rng.random((112, 112, 3)) * 6 + np.linspace(0, 200, 112)[None, :, None]).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, format="JPEG", quality=95)
    outs = [decode_chw(buf.getvalue(), d).int() for d in ("cv2", "torchvision", "pil")]
    ref = torch.from_numpy(a).permute(2, 0, 1).int()
    for o in outs:
        assert (o - ref).abs().float().mean() < 3.0  # lossy, but the same picture, same channels
        assert (o - outs[0]).abs().max() <= 3  # decoders differ only by IDCT rounding


def test_min_images_skip_fallback_and_errors(tmp_path: Path) -> None:
    _save(tmp_path / "a" / "1.jpg", (9, 9, 9), fmt="JPEG")
    _save(tmp_path / "b" / "1.jpg", (9, 9, 9), fmt="JPEG")
    _save(tmp_path / "b" / "2.jpg", (9, 9, 9), fmt="JPEG")
    (tmp_path / "misses.csv").write_text("path,action,reason\nb/2.jpg,center,no face detected\n")
    assert FaceFolder(tmp_path, min_images=2).classes == ["b"]
    assert len(FaceFolder(tmp_path, skip_fallback=True)) == 2
    _save(tmp_path / "c" / "big.png", (1, 2, 3), size=250)
    with pytest.raises(ValueError, match="not an aligned 112x112"):
        FaceFolder(tmp_path)[3]
    with pytest.raises(FileNotFoundError):
        FaceFolder(tmp_path / "nope")
    with pytest.raises(ValueError, match="decoder"):
        FaceFolder(tmp_path, decoder="magic")


def test_random_flip_is_a_mirror() -> None:
    x = torch.arange(6, dtype=torch.uint8).reshape(1, 2, 3).expand(3, 2, 3)
    assert random_flip(x, p=1.0)[0, 0].tolist() == [2, 1, 0]
    assert random_flip(x, p=0.0) is x


def test_paths_are_passed_down_never_read_from_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("CQA_CACHE", str(tmp_path / "c"))  # read by an entry point's Settings.from_env only
    monkeypatch.setenv("CQA_DATA", str(tmp_path / "d"))
    assert cache_place(tmp_path / "given") == tmp_path / "given" and data_place(tmp_path / "d2") == tmp_path / "d2"
    assert cache_place(None) == Path.home() / ".cache" / "cqa-face"  # the default, not $CQA_CACHE
    assert data_place(None) == (repo_root().parent / "shared" / "data").resolve()
    assert aligned_dir("x", tmp_path / "given") == tmp_path / "given" / "aligned-v2" / "x"
    assert (repo_root() / "cqa_core" / "data" / "__init__.py").exists()


@pytest.mark.data
def test_ensure_aligned_once(lfw_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cache = tmp_path / "cache"
    src = tmp_path / "raw"
    for name in ("Aaron_Peirsol", "Abdullah_Gul"):
        (src / name).mkdir(parents=True)
        for f in sorted((lfw_root / name).glob("*.jpg"))[:2]:
            (src / name / f.name).write_bytes(f.read_bytes())
    threads = torch.get_num_threads()
    out = ensure_aligned(src, name="tiny", workers=1, progress=False, cache_root=cache)
    assert torch.get_num_threads() == threads  # in-process alignment leaves the caller's setting
    assert out == tmp_path / "cache" / "aligned-v2" / "tiny" == aligned_dir("tiny", cache)
    summary = json.loads((out / ".complete.json").read_text())
    assert summary["total"] == 4 and summary["methods"].get("mtcnn", 0) >= 3
    ds = FaceFolder(out)
    assert ds.classes == ["Aaron_Peirsol", "Abdullah_Gul"] and len(ds) == 4
    assert ds[0][0].shape == (3, 112, 112)
    (out / "Abdullah_Gul" / "Abdullah_Gul_0001.jpg").unlink()
    assert ensure_aligned(src, name="tiny", cache_root=cache) == out  # marker present: no work, nothing redone
    assert not (out / "Abdullah_Gul" / "Abdullah_Gul_0001.jpg").exists()


@pytest.mark.data
def test_ensure_aligned_rewarps_an_earlier_versions_landmarks(
    lfw_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import csv

    import cqa_core.data.align as align
    from cqa_core.data.align_run import align_folder

    cache = tmp_path / "cache"
    src = tmp_path / "raw" / "Aaron_Peirsol"
    src.mkdir(parents=True)
    for f in sorted((lfw_root / "Aaron_Peirsol").glob("*.jpg"))[:2]:
        (src / f.name).write_bytes(f.read_bytes())
    old = aligned_dir("tiny", cache, version=1)
    assert old == tmp_path / "cache" / "aligned" / "tiny"
    align_folder(src.parent, old, workers=1, progress=False)
    (old / MARKER).write_text(json.dumps({"src": str(src.parent.resolve())}))

    def no_detector(*a: object, **k: object) -> None:
        raise AssertionError("MTCNN ran although landmarks were stored")

    monkeypatch.setattr(align, "detect_faces", no_detector)
    out = ensure_aligned(src.parent, name="tiny", workers=1, progress=False, cache_root=cache)
    assert out == aligned_dir("tiny", cache) != old
    assert json.loads((out / MARKER).read_text())["landmarks_reused"] == 2
    with open(out / "alignment.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 2 and all(r["method"] == "mtcnn" for r in rows)
    for r in rows:  # the stored affine is the current (eye-weighted) fit of the stored landmarks
        pts = np.array([[float(r[f"lm{i}_{c}"]) for c in "xy"] for i in range(5)])  # (5, 2)
        affine = np.array([float(r[k]) for k in ("a00", "a01", "a02", "a10", "a11", "a12")]).reshape(2, 3)
        assert np.allclose(affine, align.fit_template(pts), atol=1e-5)
