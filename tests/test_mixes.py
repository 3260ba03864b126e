"""Teacher-labelled mixes (``cqa_core.training.mixes``): the mix itself, the canvas, the file,
and how training treats images without an identity."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from cqa_core.config import UNLABELLED, AugmentConfig, DistillConfig, LossConfig
from cqa_core.data.augment import AugmentedFaces
from cqa_core.data.template import ARCFACE_TEMPLATE
from cqa_core.losses import CQACriterion
from cqa_core.model import create_head
from cqa_core.model.cqa_face import CQAOutput
from cqa_core.training import mixes


def test_blend_lies_between_its_two_faces() -> None:
    a, b = np.zeros((192, 192, 3), np.uint8), np.full((192, 192, 3), 200, np.uint8)
    for seed in range(20):
        out = mixes.mix(a, b, np.random.default_rng(seed))
        if np.ptp(out) == 0:  # a blend: one value everywhere, lambda in [0.35, 0.65] of the way
            assert 0.35 * 200 - 1 <= out[0, 0, 0] <= 0.65 * 200 + 1
        else:  # a cut: top rows from one face, bottom rows from the other, seam between eyes and mouth
            top, bottom = int(out[0, 0, 0]), int(out[-1, 0, 0])
            assert {top, bottom} == {0, 200}
            seam = np.nonzero(np.abs(out[:, 0, 0].astype(int) - top) > 100)[0][0]  # first row past halfway
            eyes, mouth = 51.6 + mixes.CONTEXT, 92.3 + mixes.CONTEXT
            assert eyes + 5 <= seam <= mouth - 5


def test_canvas_centre_is_the_aligned_crop() -> None:
    from cqa_core.data.align import fit_template, warp

    rng = np.random.default_rng(0)
    photo = rng.integers(0, 256, (250, 250, 3)).astype(np.uint8)
    affine = fit_template(ARCFACE_TEMPLATE * 1.6 + 30)  # a face 1.6x larger, moved
    big = mixes.canvas(photo, affine)
    assert big.shape == (192, 192, 3)
    crop = warp(photo, affine)
    diff = np.abs(big[40:152, 40:152].astype(int) - crop.astype(int))
    assert diff.max() <= 1 and (diff > 0).mean() < 0.01  # the same warp, up to cv2's fixed-point rounding


def photo_folder(tmp_path: Path, people: int = 3, each: int = 2) -> Path:
    """A fake aligned folder: crops + alignment.csv (MTCNN rows) + .complete.json naming the photos."""
    src, root = tmp_path / "photos", tmp_path / "aligned"
    rows = []
    for p in range(people):
        for k in range(each):
            rel = f"{p}/{k}.png"
            img = np.full((160, 160, 3), 40 * p + 10 * k, np.uint8)
            for d in (src, root):
                (d / str(p)).mkdir(parents=True, exist_ok=True)
            Image.fromarray(img).save(src / rel)
            Image.fromarray(img[:112, :112]).save(root / rel)
            rows.append({"path": rel, "out": rel, "method": "mtcnn", "a00": 1, "a01": 0, "a02": -20,
                         "a10": 0, "a11": 1, "a12": -20})
    with open(root / "alignment.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    (root / ".complete.json").write_text(json.dumps({"src": str(src)}))
    return root


class MeanTeacher:
    """A stand-in teacher: the mean colour of the teacher's view (the canvas) and of the crop."""

    name, dim = "mean", 2

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, faces) -> np.ndarray:
        self.calls += len(faces)
        return np.array([[f.photo.mean(), f.crop.mean()] for f in faces], np.float32)


def test_compute_mixes_file_is_deterministic_and_resumes(tmp_path: Path, monkeypatch) -> None:
    root = photo_folder(tmp_path)
    teacher = MeanTeacher()
    monkeypatch.setattr(mixes, "make_teacher", lambda spec: teacher)
    monkeypatch.setattr(mixes, "SAVE_EVERY", 4)
    path = mixes.compute_mixes(root, "mean", n=10, batch_size=4, progress=False)
    assert path == root / "distill" / "mean-mixes10-s0.safetensors" and teacher.calls == 10
    from safetensors.torch import load_file

    data = load_file(str(path))
    assert data["images"].shape == (10, 112, 112, 3) and data["embeddings"].shape == (10, 2)
    # every photo is flat grey with value 40 p + 10 k: a mix of two people never equals either photo
    singles = {40 * p + 10 * k for p in range(3) for k in range(2)}
    for img, (_, crop_mean) in zip(data["images"].numpy(), data["embeddings"].numpy(), strict=True):
        assert img.mean() == pytest.approx(crop_mean, abs=1e-3)  # the student's crop is what the teacher saw
        assert not (np.ptp(img) == 0 and int(img[0, 0, 0]) in singles)

    again = mixes.compute_mixes(root, "mean", n=10, batch_size=4, progress=False)
    assert again == path and teacher.calls == 10  # cached

    # an interrupted run (partial file after 8 of 12) resumes and gives the uninterrupted result
    full = load_file(str(mixes.compute_mixes(root, "mean", n=12, batch_size=4, progress=False)))
    part = {k: v[:8].contiguous() for k, v in full.items()}
    from safetensors.torch import save_file

    out12 = root / "distill" / "mean-mixes12-s0.safetensors"
    out12.unlink()
    save_file(part, str(out12.with_suffix(".partial.safetensors")))
    resumed = load_file(str(mixes.compute_mixes(root, "mean", n=12, batch_size=4, progress=False)))
    assert torch.equal(resumed["images"], full["images"]) and torch.equal(resumed["embeddings"], full["embeddings"])


def test_load_mixes_centres_on_the_photos_mean(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    save_file({"images": torch.zeros(2, 112, 112, 3, dtype=torch.uint8),
               "embeddings": torch.tensor([[3.0, 1.0], [1.0, 4.0]])}, str(tmp_path / "m.safetensors"))
    images, targets = mixes.load_mixes(tmp_path / "m.safetensors", mean=torch.tensor([1.0, 1.0]))
    assert images.shape == (2, 3, 112, 112)
    np.testing.assert_allclose(targets.numpy(), [[1.0, 0.0], [0.0, 1.0]])  # (2, 0) and (0, 3), normalised


def test_mixes_join_the_training_set_without_identity() -> None:
    base = [(torch.zeros(3, 112, 112, dtype=torch.uint8), 0), (torch.ones(3, 112, 112, dtype=torch.uint8), 1)]
    mixed = (torch.full((3, 3, 112, 112), 7, dtype=torch.uint8), torch.eye(3)[:, :2])
    ds = AugmentedFaces(base, AugmentConfig(), targets=torch.eye(2), mixes=mixed)
    assert len(ds) == 5
    img, label, extras = ds[(3, 0)]  # the second mix
    assert label == UNLABELLED and int(img[0, 0, 0]) == 7 and torch.equal(extras["target"], torch.eye(3)[1, :2])
    assert ds[(1, 0)][1] == 1 and torch.equal(ds[(1, 0)][2]["target"], torch.eye(2)[1])


def test_margin_loss_skips_unlabelled_rows() -> None:
    torch.manual_seed(0)
    head = create_head("cosface", 8, 3, 16.0, 0.2)
    crit = CQACriterion(LossConfig(scale=16.0, margin=0.2, diversity="none"), head)
    emb = torch.randn(4, 8)

    def out(e: torch.Tensor) -> CQAOutput:
        n = len(e)
        return CQAOutput(e, torch.zeros(n, 2, 7, 7), torch.zeros(n, 2, 7, 7), torch.zeros(n, 2, 2),
                         torch.ones(n, 2), torch.zeros(n, 2, 2))

    labels = torch.tensor([2, UNLABELLED, 0, UNLABELLED])
    mixed = crit(out(emb), labels).cls
    only = crit(out(emb[[0, 2]]), labels[[0, 2]]).cls  # the labelled rows alone
    assert mixed.item() == pytest.approx(only.item(), rel=1e-6)
    none = crit(out(emb[[1, 3]]), labels[[1, 3]]).cls
    assert none.item() == 0.0


def test_mixes_need_a_teacher() -> None:
    with pytest.raises(ValueError, match="needs a teacher"):
        DistillConfig(mixes=10)
    with pytest.raises(ValueError, match=">= 0"):
        DistillConfig(teacher="dlib", mixes=-1)
