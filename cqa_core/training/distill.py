"""Knowledge distillation: teacher embeddings, computed once per training image, and the losses.

    cqa distill-targets ~/.cache/cqa-face/aligned-v2/celeba299 --teacher dlib
    cqa train --config configs/default_cpu.py --set distill.teacher=dlib

A *teacher* is any recognizer a model spec names (:func:`make_teacher`, through
``recognizers.load_recognizer``, the loader of ``--model``):

* ``dlib``: dlib's public ResNet (128-d, ~99.4% on LFW as published; the ``distill`` extra:
  ``dlib-bin`` + ``face_recognition_models``, whose model files are read from the package
  folder directly, because that package's ``__init__`` imports the retired ``pkg_resources``).
  It is fed its own 150 x 150 chip, cut from the *original photo* by dlib's 5-point shape
  predictor inside a box around our MTCNN landmarks (``alignment.csv``); crops without a source
  photo (RecordIO) are padded and used as the photo.
* a CQA-Face ``.safetensors`` checkpoint (e.g. an r100 trained on a GPU, distilled into the
  light model a CPU dashboard serves): flip-summed embeddings of the aligned crop;
* an ``.onnx`` embedder taking (N, 3, 112, 112) RGB in [-1, 1], or any other recognizer taking
  the aligned 112 x 112 crop (an insightface ``.pth``, a plug-in's): its embeddings of the crop.

Targets are cached beside the aligned crops in ``ROOT/distill/<teacher id>.safetensors``
(raw embeddings + the relative paths in metadata; resumable: a partial file is written every
``SAVE_EVERY`` faces). :func:`load_targets` centres them on the training-set mean and
L2-normalises them. The student learns them through :class:`DistillLoss`, a training-only
projection that is not part of the model.

dlib and onnxruntime are imported by their adapters when loaded: the trainer imports
:class:`DistillLoss` on machines that have only torch.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from torch import nn
from tqdm.auto import tqdm

from cqa_core.checkpoint import atomic_write, file_digest
from cqa_core.data.align_run import mtcnn_rows
from cqa_core.data.datasets import FaceFolder
from cqa_core.data.imageio import load_image
from cqa_core.data.template import ARCFACE_TEMPLATE
from cqa_core.recognizers import dlib_resnet
from cqa_core.recognizers.base import Recognizer, RecognizerError
from cqa_core.recognizers.load import load_recognizer
from cqa_core.recognizers.registry import DLIB

if TYPE_CHECKING:
    import numpy as np

log = logging.getLogger(__name__)
SAVE_EVERY = 1024


# -- teachers --------------------------------------------------------------------------------
class Face:
    """One training face: the aligned crop, and where known its source photo (a path, or the
    pixels themselves) and its landmarks on that photo."""

    def __init__(self, crop: np.ndarray, photo: Path | np.ndarray | None = None,
                 landmarks: np.ndarray | None = None) -> None:
        self.crop, self.photo, self.landmarks = crop, photo, landmarks  # (112,112,3) uint8, -, (5, 2)


class DlibTeacher:
    """dlib's ResNet face descriptor (128-d) on its own 150 x 150 chips, cut by dlib's pipeline."""

    name, dim = DLIB, 128

    def __init__(self, rec: Recognizer) -> None:
        self.rec = rec

    def chip(self, face: Face) -> np.ndarray:
        """dlib's aligned 150 x 150 chip of ``face`` (from the photo when known)."""
        if face.photo is not None and face.landmarks is not None:
            img = face.photo if isinstance(face.photo, np.ndarray) else load_image(face.photo)  # (H, W, 3)
            lm = face.landmarks  # (5, 2) eyes, nose, mouth corners
        else:  # aligned crop only: pad it so dlib's chip (25% context) stays on the image
            img = np.pad(face.crop, ((40, 40), (40, 40), (0, 0)), mode="edge")

            lm = ARCFACE_TEMPLATE + 40.0
        return dlib_resnet.dlib_chip(img, lm, detect=False)[0]  # (150, 150, 3): shape predictor in the landmark box

    def __call__(self, faces: Sequence[Face]) -> np.ndarray:
        return self.rec.embed(np.stack([self.chip(f) for f in faces]))  # (n, 128)


class CropTeacher:
    """Any recognizer taking the aligned 112 x 112 crop (CQA-Face, ONNX, a plug-in): its embeddings,
    flip-summed for a CQA-Face checkpoint (its own test-time habit)."""

    def __init__(self, rec: Recognizer, name: str, flip: bool) -> None:
        if not rec.preprocess.is_arcface112:
            raise ValueError(f"teacher {rec.name}: a teacher other than dlib takes the aligned 112 x 112 crop, "
                             f"not a {rec.preprocess.size} x {rec.preprocess.size} {rec.preprocess.template} chip")
        self.rec, self.name, self.flip = rec, name, flip
        self.dim: int | None = None  # known after the first batch

    def __call__(self, faces: Sequence[Face]) -> np.ndarray:
        crops = np.stack([f.crop for f in faces])  # (n, 112, 112, 3) uint8
        e = self.rec.embed(crops)  # (n, D)
        if self.flip:
            e = e + self.rec.embed(np.ascontiguousarray(crops[:, :, ::-1]))  # (n, D)
        self.dim = e.shape[1]
        return e.astype(np.float32)


def teacher_name(rec: Recognizer) -> str:
    """The id its targets are cached under: kind, file stem and the file's sha256 (``ckpt-NAME-HASH``)."""
    prefix = {"cqa-face": "ckpt"}.get(rec.kind, rec.kind)
    if rec.source and Path(rec.source).is_file():
        return f"{prefix}-{Path(rec.source).stem}-{file_digest(rec.source, 'sha256', 12)}"
    return f"{prefix}-{rec.digest}"


def make_teacher(spec: str) -> Callable[[Sequence[Face]], np.ndarray]:
    """A teacher from a recognizer spec (``recognizers.load_recognizer``: ``dlib``, a ``.safetensors``
    CQA-Face checkpoint, an ``.onnx`` file, a plug-in's name)."""
    try:
        rec = load_recognizer(spec)
    except RecognizerError as exc:
        raise RecognizerError(f"the teacher {spec!r}: {exc}") from exc
    if rec.kind == DLIB:
        return DlibTeacher(rec)
    return CropTeacher(rec, teacher_name(rec), flip=rec.kind == "cqa-face")


# -- targets ---------------------------------------------------------------------------------
def targets_path(root: str | Path, teacher_name: str) -> Path:
    return Path(root) / "distill" / f"{teacher_name}.safetensors"


def _sources(root: Path) -> dict[str, tuple[Path, np.ndarray]]:
    """Aligned crop path -> (source photo, (5, 2) landmarks) from ``alignment.csv`` (MTCNN rows)."""
    return {r["out"]: (photo, np.array([[float(r[f"lm{i}_x"]), float(r[f"lm{i}_y"])] for i in range(5)]))  # (5, 2)
            for r, photo in mtcnn_rows(root)}


def compute_targets(root: str | Path, teacher_spec: str, batch_size: int = 32, progress: bool = True) -> Path:
    """Teacher embeddings of every crop of the aligned identity folder ``root``; returns the file.

    Cached: a finished file is reused; an interrupted run resumes from its partial file.
    """
    root = Path(root)
    teacher = make_teacher(teacher_spec)
    out = targets_path(root, teacher.name)
    if out.exists():
        return out
    dataset = FaceFolder(root)
    rel = [Path(p).relative_to(root).as_posix() for p, _ in dataset.samples]
    partial = out.with_suffix(".partial.safetensors")
    done: dict[str, np.ndarray] = {}
    if partial.exists():
        with safe_open(str(partial), "pt") as f:
            paths = json.loads(f.metadata()["paths"])
        done = dict(zip(paths, load_file(str(partial))["embeddings"].numpy(), strict=True))
    sources = _sources(root)
    todo = [i for i, r in enumerate(rel) if r not in done]
    bar = None
    if progress:
        bar = tqdm(total=len(rel), initial=len(rel) - len(todo), desc=f"teacher {teacher.name}", unit="face")

    def write(path: Path, items: dict[str, np.ndarray]) -> None:
        keys = list(items)
        tensors = {"embeddings": torch.from_numpy(np.stack([items[k] for k in keys]))}  # (n, D)
        meta = {"paths": json.dumps(keys), "teacher": teacher.name, "root": str(root)}
        atomic_write(path, lambda tmp: save_file(tensors, str(tmp), metadata=meta))

    out.parent.mkdir(parents=True, exist_ok=True)
    since = 0
    for start in range(0, len(todo), batch_size):
        idx = todo[start:start + batch_size]
        faces = []
        for i in idx:
            crop = dataset[i][0].permute(1, 2, 0).numpy()  # (112, 112, 3)
            photo, lm = sources.get(rel[i], (None, None))
            faces.append(Face(crop, photo, lm))
        for i, e in zip(idx, teacher(faces), strict=True):
            done[rel[i]] = e
        since += len(idx)
        if bar is not None:
            bar.update(len(idx))
        if since >= SAVE_EVERY:
            write(partial, done)
            since = 0
    if bar is not None:
        bar.close()
    write(out, {r: done[r] for r in rel})
    partial.unlink(missing_ok=True)
    return out


def load_targets(path: str | Path, samples: Sequence[tuple[str, int]], root: str | Path,
                 with_mean: bool = False) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Centred, L2-normalised teacher targets (N, D) in the order of a FaceFolder's ``samples``
    (and, with ``with_mean``, the (D,) raw mean they were centred on)."""
    with safe_open(str(path), "pt") as f:
        paths = json.loads(f.metadata()["paths"])
        raw = f.get_tensor("embeddings").float()  # (M, D)
    row = {p: i for i, p in enumerate(paths)}
    rel = [Path(p).relative_to(root).as_posix() for p, _ in samples]
    missing = [r for r in rel if r not in row]
    if missing:
        raise ValueError(f"{path} has no teacher embedding for {len(missing)} training images (e.g. {missing[0]}); "
                         "delete it and run `cqa distill-targets` again")
    emb = raw[[row[r] for r in rel]]  # (N, D)
    mean = emb.mean(dim=0)  # (D,)
    targets = F.normalize(emb - mean, dim=1)  # (N, D)
    return (targets, mean) if with_mean else targets


def prepare(dataset: Any, teacher_spec: str, batch_size: int = 32, progress: bool = True,
            with_mean: bool = False) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Targets for a FaceFolder training set, computing and caching them on first use."""
    if not hasattr(dataset, "samples") or not hasattr(dataset, "root"):
        raise ValueError("distillation needs an identity-folder training set (data.format='folder')")
    path = compute_targets(dataset.root, teacher_spec, batch_size, progress)
    return load_targets(path, dataset.samples, dataset.root, with_mean)


# -- loss ------------------------------------------------------------------------------------
class DistillLoss(nn.Module):
    """Cosine loss through a training-only projection plus a relational loss on the batch geometry.

    forward(embedding (B, E), target (B, D) unit rows) -> (cosine loss, relational loss), where
    cosine = mean_b (1 - cos(W e_b, t_b)) and relational = mean over b != b' of
    (cos(e_b, e_b') - <t_b, t_b'>)^2.
    """

    def __init__(self, embedding_size: int, teacher_dim: int) -> None:
        super().__init__()
        self.proj = nn.Linear(embedding_size, teacher_dim, bias=False)

    def forward(self, embedding: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        e = embedding.float()  # (B, E)
        cos = 1.0 - F.cosine_similarity(self.proj(e), target, dim=1).mean()  # ()
        s = F.normalize(e, dim=1)  # (B, E)
        gram_s, gram_t = s @ s.T, target @ target.T  # (B, B) each
        off = ~torch.eye(len(e), dtype=torch.bool, device=e.device)  # (B, B)
        rel = (gram_s - gram_t)[off].pow(2).mean() if len(e) > 1 else e.sum() * 0.0  # ()
        return cos, rel
