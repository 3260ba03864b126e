"""Teacher-labelled mixes: new faces for distillation, beyond the training set's identities.

    cqa distill-targets ~/.cache/cqa-face/aligned-v2/celeba299 --teacher dlib --mixes 12000
    cqa train --config configs/default_cpu.py --set distill.mixes=12000

Off in every preset: measured on LFW pairsDevTest, 12,000 mixes (2/3 of each batch) *lowered*
dev accuracy at 392 steps, 66.2% against 73.6% without (docs/model_card.md, "What was tried").

A student distilled on CelebA-299 sees 299 people. The teacher, though, can label *any* face, and
what a student must learn is the teacher's map from faces to embeddings, not 299 answers. A mix
is a face that is in no photo: two training photos of different people, both warped onto the
same 5-point template, then

* blended pixel by pixel (lambda uniform in [0.35, 0.65]), or
* cut at a row between the eyes and the mouth: the upper face of one person over the lower face
  of the other, with a soft seam.

The teacher embeds the mix through its own chip (so its target is the teacher's reading of that
new face), and the student sees the central 112 x 112 crop, exactly as it sees a training crop.
Mixes carry no identity: the margin loss ignores them (label ``config.UNLABELLED``); distillation, CAL
and the QAN supervision use them. Each mix is drawn from its own key (seed, index), so a run is
resumable and the same set comes out for any batch size.

The result is one safetensors file beside the teacher targets,
``ROOT/distill/<teacher id>-mixes<N>-s<seed>.safetensors``: ``images`` (N, 112, 112, 3) uint8 and
``embeddings`` (N, D) float32 (raw, like the targets file; centred with the *photos'* mean).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from tqdm.auto import tqdm

from cqa_core.checkpoint import atomic_write
from cqa_core.data.align import warp
from cqa_core.data.align_run import mtcnn_rows
from cqa_core.data.imageio import load_image
from cqa_core.data.template import ARCFACE_TEMPLATE, SIZE
from cqa_core.training.distill import Face, make_teacher

if TYPE_CHECKING:
    import numpy as np

CONTEXT = 40  # px of real photo kept around the 112 x 112 crop, so the teacher's chip has context
SAVE_EVERY = 2048


def mixes_path(root: str | Path, teacher_name: str, n: int, seed: int) -> Path:
    return Path(root) / "distill" / f"{teacher_name}-mixes{n}-s{seed}.safetensors"


def canvas(photo: np.ndarray, affine: np.ndarray) -> np.ndarray:
    """The photo warped like its aligned crop, with CONTEXT px around it: (112 + 2 CONTEXT)^2 x 3."""
    shifted = np.asarray(affine, np.float64).copy()  # (2, 3) photo -> aligned
    shifted[:, 2] += CONTEXT
    return warp(photo, shifted, SIZE + 2 * CONTEXT)  # (192, 192, 3)


def mix(a: np.ndarray, b: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One new face from two template-aligned canvases (H, W, 3) uint8: a blend or an eye/mouth cut."""
    x, y = a.astype(np.float32), b.astype(np.float32)  # (H, W, 3) each
    if rng.random() < 0.5:
        lam = rng.uniform(0.35, 0.65)
        out = lam * x + (1 - lam) * y
    else:  # upper face of a, lower of b (or the other way round), cut between eyes and mouth
        eyes, mouth = ARCFACE_TEMPLATE[:2, 1].mean() + CONTEXT, ARCFACE_TEMPLATE[3:, 1].mean() + CONTEXT
        cut = rng.uniform(eyes + 6, mouth - 6)
        rows = np.arange(a.shape[0], dtype=np.float32)[:, None, None]  # (H, 1, 1)
        top = 1.0 / (1.0 + np.exp((rows - cut) / 2.0))  # (H, 1, 1) soft seam, ~8 px wide
        if rng.random() < 0.5:
            x, y = y, x
        out = top * x + (1 - top) * y
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)  # (H, W, 3)


def _rows(root: Path) -> tuple[list[Path], list[np.ndarray], list[int]]:
    """Source photos, their photo -> aligned affines and identity indices (MTCNN rows only)."""
    classes: dict[str, int] = {}
    photos, affines, ids = [], [], []
    for r, photo in mtcnn_rows(root):
        photos.append(photo)
        affines.append(np.array([[float(r[k]) for k in ("a00", "a01", "a02")],
                                 [float(r[k]) for k in ("a10", "a11", "a12")]]))  # (2, 3)
        ids.append(classes.setdefault(Path(r["out"]).parent.name, len(classes)))
    if len(set(ids)) < 2:
        raise ValueError(f"{root}: mixes need MTCNN-aligned photos of at least two people (alignment.csv)")
    return photos, affines, ids


def compute_mixes(root: str | Path, teacher_spec: str, n: int, seed: int = 0, batch_size: int = 32,
                  progress: bool = True) -> Path:
    """Make ``n`` teacher-labelled mixes of the aligned identity folder ``root``; returns the file.

    Cached: a finished file is reused; an interrupted run resumes from its partial file.
    """
    root = Path(root)
    if n < 1:
        raise ValueError(f"the number of mixes must be >= 1, got {n}")
    teacher = make_teacher(teacher_spec)
    out = mixes_path(root, teacher.name, n, seed)
    if out.exists():
        return out
    photos, affines, ids = _rows(root)
    partial = out.with_suffix(".partial.safetensors")
    images, embeddings = [], []
    if partial.exists():
        done = load_file(str(partial))
        images, embeddings = list(done["images"].numpy()), list(done["embeddings"].numpy())
    bar = None
    if progress:
        bar = tqdm(total=n, initial=len(images), desc=f"mixes {teacher.name}", unit="face")

    def write(path: Path) -> None:
        tensors = {"images": torch.from_numpy(np.stack(images)),  # (m, 112, 112, 3) uint8
                   "embeddings": torch.from_numpy(np.stack(embeddings).astype(np.float32))}  # (m, D)
        meta = {"teacher": teacher.name, "root": str(root), "seed": str(seed), "n": str(n)}
        atomic_write(path, lambda tmp: save_file(tensors, str(tmp), metadata=meta))

    out.parent.mkdir(parents=True, exist_ok=True)
    landmarks = ARCFACE_TEMPLATE.astype(np.float64) + CONTEXT  # (5, 2) on every canvas
    since = 0
    while len(images) < n:
        faces = []
        for i in range(len(images), min(n, len(images) + batch_size)):
            rng = np.random.default_rng([seed, i])
            a = int(rng.integers(len(photos)))
            b = int(rng.integers(len(photos)))
            while ids[b] == ids[a]:
                b = int(rng.integers(len(photos)))
            face = mix(canvas(load_image(photos[a]), affines[a]), canvas(load_image(photos[b]), affines[b]), rng)
            faces.append(Face(face[CONTEXT:CONTEXT + SIZE, CONTEXT:CONTEXT + SIZE].copy(), face, landmarks))
        for f, e in zip(faces, teacher(faces), strict=True):
            images.append(f.crop)
            embeddings.append(e)
        since += len(faces)
        if bar is not None:
            bar.update(len(faces))
        if since >= SAVE_EVERY:
            write(partial)
            since = 0
    if bar is not None:
        bar.close()
    write(out)
    partial.unlink(missing_ok=True)
    return out


def load_mixes(path: str | Path, mean: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(images (N, 3, 112, 112) uint8, targets (N, D) centred on the photos' ``mean`` and L2-normalised)."""
    data = load_file(str(path))
    images = data["images"].permute(0, 3, 1, 2).contiguous()  # (N, 3, 112, 112)
    targets = torch.nn.functional.normalize(data["embeddings"].float() - mean, dim=1)  # (N, D)
    return images, targets
