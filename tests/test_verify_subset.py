"""Training-time verification aligns only the photos of its pairs (issue 14, item 5).

A fake LFW of 5 people x 3 photos and a pair list that uses 7 of the 15 photos. Alignment runs
through the real ``align_folder`` (resume, CSVs, cache folder) with ``align_one`` replaced by a
stub that writes a grey crop and records which photo it was asked for.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cqa_core.config import TrainConfig
from cqa_core.data import align_run
from cqa_core.training.verify import PairVerifier

PEOPLE = ["Ann", "Bob", "Cid", "Dan", "Eve"]
PAIRS = "Ann\t1\t2\nBob\t1\t3\nAnn\t1\tBob\t2\nCid\t1\tDan\t1\n"  # same, same, different, different
USED = ["Ann/Ann_0001.jpg", "Ann/Ann_0002.jpg", "Bob/Bob_0001.jpg", "Bob/Bob_0002.jpg", "Bob/Bob_0003.jpg",
        "Cid/Cid_0001.jpg", "Dan/Dan_0001.jpg"]


@pytest.fixture
def lfw(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, list[str]]:
    """(pairs file in a 15-photo fake LFW, list that collects every photo the stub aligns)."""
    src = tmp_path / "lfw-fake"
    for name in PEOPLE:
        (src / name).mkdir(parents=True)
        for i in range(1, 4):
            Image.fromarray(np.full((40, 40, 3), 60 * i, np.uint8)).save(src / name / f"{name}_{i:04d}.jpg")
    (src / "pairs.txt").write_text(PAIRS)
    aligned: list[str] = []

    def fake_align_one(s: str, dst: str, rel: str, fallback: str | None, known: dict | None = None):
        aligned.append(rel)
        out = Path(dst, align_run.out_name(rel))
        out.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.full((112, 112, 3), 128, np.uint8)).save(out)
        row = dict.fromkeys(align_run.ALIGN_FIELDS, "")
        row.update(path=rel, out=align_run.out_name(rel), method="center", score="0", src_w=40, src_h=40)
        return "ok", row

    monkeypatch.setattr(align_run, "align_one", fake_align_one)
    return src / "pairs.txt", aligned


def test_aligns_only_the_pairs_photos_once(lfw: tuple[Path, list[str]]) -> None:
    from cqa_core.data.datasets import aligned_dir

    pairs_file, aligned = lfw
    cache = pairs_file.parents[1] / "cache"  # the cache root the caller passes down
    verifier = PairVerifier.build(TrainConfig(eval_pairs=str(pairs_file)), cache_root=cache)
    assert verifier is not None and len(verifier.paths) == 4 and verifier.issame == [True, True, False, False]
    assert sorted(aligned) == USED  # 7 of the 15 photos
    dst = aligned_dir("lfw-fake", cache)
    assert verifier.paths[2] == (dst / "Ann" / "Ann_0001.jpg", dst / "Bob" / "Bob_0002.jpg")
    rows = (dst / "alignment.csv").read_text().splitlines()
    assert len(rows) == 1 + 7  # header + the 7 crops: a later full ensure_aligned resumes from them
    assert PairVerifier.build(TrainConfig(eval_pairs=str(pairs_file)), cache_root=cache, allow_align=False) is not None
    assert PairVerifier.build(TrainConfig(eval_pairs=str(pairs_file)), cache_root=cache) is not None
    assert len(aligned) == 7  # nothing aligned twice


def test_max_pairs_aligns_fewer(lfw: tuple[Path, list[str]]) -> None:
    pairs_file, aligned = lfw
    cache = pairs_file.parents[1] / "cache"  # the cache root the caller passes down
    verifier = PairVerifier.build(TrainConfig(eval_pairs=str(pairs_file), eval_max_pairs=2), cache_root=cache)
    assert verifier is not None and len(verifier.paths) == 2  # pairs 0 and 2 (every second)
    assert sorted(aligned) == ["Ann/Ann_0001.jpg", "Ann/Ann_0002.jpg", "Bob/Bob_0002.jpg"]


def test_without_alignment_allowed_an_unaligned_folder_is_off(lfw: tuple[Path, list[str]]) -> None:
    pairs_file, aligned = lfw
    cache = pairs_file.parents[1] / "cache"  # the cache root the caller passes down
    assert PairVerifier.build(TrainConfig(eval_pairs=str(pairs_file)), cache_root=cache, allow_align=False) is None
    assert aligned == []


def test_a_complete_cache_is_used_as_is(lfw: tuple[Path, list[str]]) -> None:
    import torch

    from cqa_core.config import ModelConfig
    from cqa_core.data.datasets import MARKER, aligned_dir
    from cqa_core.model import create_model

    pairs_file, aligned = lfw
    cache = pairs_file.parents[1] / "cache"  # the cache root the caller passes down
    dst = aligned_dir("lfw-fake", cache)
    for rel in USED:
        (dst / rel).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.zeros((112, 112, 3), np.uint8)).save(dst / rel)
    (dst / MARKER).write_text("{}")
    verifier = PairVerifier.build(TrainConfig(eval_pairs=str(pairs_file)), cache_root=cache, allow_align=False)
    assert verifier is not None and aligned == []
    result = verifier(create_model(ModelConfig(stem="light")), torch.device("cpu"))
    assert result["pairs"] == 4 and 0.0 <= result["accuracy"] <= 1.0
