"""Long jobs say in one line what they reuse: the stem-feature cache, aligned crops, the alignment
store, a model's LFW threshold and stored embeddings, each with where it lives and when it was built.

Every expected line is written out here from what the test itself made (how many faces, which
folder, the file whose modification time dates it), so a missing, silent or wrong line fails.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from cqa_core.config import DataConfig, ModelConfig, TrainConfig
from cqa_core.data.align import AlignedFace, center_affine
from cqa_core.data.align_store import AlignmentStore
from cqa_core.data.datasets import MARKER, aligned_dir, ensure_aligned
from cqa_core.data.reuse import home_short, human_bytes
from cqa_core.evaluation.runs.embcache import EmbeddingCache
from cqa_core.evaluation.threshold import lfw_threshold
from cqa_core.training.feature_cache import prepare


def built(path: Path) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(path.stat().st_mtime))


def reuse_lines(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith("reusing ")]


def test_home_is_written_as_a_tilde_and_sizes_in_powers_of_1000():
    assert home_short(Path.home() / ".cache" / "x") == "~/.cache/x" and home_short("/tmp/x") == "/tmp/x"
    assert home_short(str(Path.home()) + "other/x") == str(Path.home()) + "other/x"  # not inside home
    assert (human_bytes(999), human_bytes(18_120), human_bytes(1.2e9)) == ("999 B", "18.1 kB", "1.2 GB")


class Grey(torch.utils.data.Dataset):
    """n grey faces, labels i % 3."""

    def __init__(self, n: int = 12) -> None:
        self.n, self.num_classes = n, 3

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return torch.full((3, 112, 112), 10 * i, dtype=torch.uint8), i % 3


def test_a_second_frozen_stem_run_says_it_reuses_the_feature_cache(tmp_path, capsys):
    torch.set_num_threads(1)
    config = TrainConfig(model=ModelConfig(stem="light"), data=DataConfig(root=str(tmp_path), num_workers=0),
                         freeze_stem=True, cache_views=2, cache_dir=str(tmp_path / "cache"), progress=False,
                         tensorboard=False, eval_pairs=None, out_dir=str(tmp_path / "run"))
    stem = nn.AvgPool2d(16)  # (B, 3, 112, 112) -> (B, 3, 7, 7)
    prepare(stem, Grey(), config, torch.device("cpu"))
    first = capsys.readouterr().err
    assert "feature cache: 12 faces x 3 views" in first and reuse_lines(first) == []  # built, not reused
    prepare(stem, Grey(), config, torch.device("cpu"))
    root = tmp_path / "cache"
    # features 12 x 3 x 3 x 7 x 7 x 2 = 10,584 B, visibility 12 x 3 x 7 x 7 x 4 = 7,056 B, labels 96 B,
    # plus a 128-byte header per .npy file: 18,120 B
    assert reuse_lines(capsys.readouterr().err) == [
        f"reusing the stem-feature cache at {home_short(root)} (12 faces x 3 views, 18.1 kB, built {built(root / 'progress.json')})"]


def test_a_second_alignment_of_a_folder_says_it_reuses_the_crops(tmp_path, capsys):
    src = tmp_path / "photos" / "Ann"
    src.mkdir(parents=True)
    for i in range(2):  # flat grey: no face, so each gets the centre crop
        Image.fromarray(np.full((120, 100, 3), 90 + i, np.uint8)).save(src / f"Ann_000{i + 1}.jpg")
    dst = ensure_aligned(tmp_path / "photos", workers=1, progress=False, cache_root=tmp_path / "cache")
    assert dst == aligned_dir("photos", tmp_path / "cache") and reuse_lines(capsys.readouterr().err) == []
    assert ensure_aligned(tmp_path / "photos", workers=1, progress=False, cache_root=tmp_path / "cache") == dst
    assert reuse_lines(capsys.readouterr().err) == [
        f"reusing the aligned crops (v2) at {home_short(dst)} (2 photos, 2 with no face found, from {home_short(tmp_path / 'photos')}, "
        f"built {built(dst / MARKER)})"]


def fallback_face() -> AlignedFace:
    return AlignedFace(np.zeros((112, 112, 3), np.uint8), center_affine(250, 250), None, (250, 250), "center", 0.0)


def test_the_alignment_store_says_once_that_it_reuses_earlier_rows(tmp_path, capsys):
    writer = AlignmentStore(root=tmp_path / "store")
    for digest in ("a" * 40, "b" * 40):
        writer.put(digest, fallback_face())
    assert writer.get("a" * 40) is not None and reuse_lines(capsys.readouterr().err) == []  # its own rows
    reader = AlignmentStore(root=tmp_path / "store")  # another process, later
    assert reader.get("b" * 40) is not None and reader.get("c" * 40) is None
    path = tmp_path / "store" / "alignment.csv"
    assert reuse_lines(capsys.readouterr().err) == [
        f"reusing the alignment store at {home_short(path)} (2 photos' landmarks, built {built(path)})"]
    AlignmentStore(root=tmp_path / "store").get("a" * 40)  # the same file again: said once per process
    assert reuse_lines(capsys.readouterr().err) == []


def test_a_stored_threshold_is_announced_once(tmp_path, capsys):
    path = tmp_path / "thresholds" / "dlib-ab12.json"
    path.parent.mkdir()
    doc = {"threshold": 0.5312, "accuracy": 0.962, "pairs": 1000, "source": "LFW View 1 pairsDevTest.txt", "model": "dlib"}
    path.write_text(json.dumps(doc))
    rec = SimpleNamespace(name="dlib")
    for _ in range(3):  # the analysis service reads it at every verdict
        assert lfw_threshold(rec, tmp_path / "no-lfw", tmp_path, path=path) == doc
    assert reuse_lines(capsys.readouterr().err) == [
        f"reusing dlib's LFW threshold at {home_short(path)} (cosine 0.531, 96.2% of 1,000 LFW View 1 pairsDevTest.txt pairs "
        f"right, built {built(path)})"]


def test_a_rerun_says_how_many_embeddings_it_reuses(tmp_path, capsys):
    group = EmbeddingCache(tmp_path / "emb").group(digest="0123456789abcdef99", data="lfw", align="mtcnn-v2",
                                                   edit="none", chip="crop", flip=False)
    shard = group.add(["x", "y", "z"], {"embedding": np.ones((3, 4), np.float32)})
    os.utime(group.folder / "group.json", (1_700_000_000, 1_700_000_000))  # built at a known time
    got, found = group.load(["x", "q", "z"])
    assert found.tolist() == [True, False, True] and got["embedding"][0].tolist() == [1.0] * 4
    assert reuse_lines(capsys.readouterr().err) == [
        f"reusing 2 of 3 stored embeddings at {home_short(group.folder)} (weights 0123456789ab, lfw, mtcnn-v2, 1 shard, "
        f"{human_bytes(shard.stat().st_size)}, built {time.strftime('%Y-%m-%d %H:%M', time.localtime(1_700_000_000))})"]
    group.load(["q"])  # nothing found: nothing said
    assert reuse_lines(capsys.readouterr().err) == []


@pytest.fixture(autouse=True)
def _threads():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)
