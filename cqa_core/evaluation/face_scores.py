"""Per-face readings of a CQA-Face model in batches: the numbers EDC and ``cqa audit`` need.

For every face, from one forward pass (the :class:`~cqa_core.model.cqa_face.CQAOutput`):

* ``embedding`` (D,): the FC-512 output before any normalisation (flip-sum when asked);
* ``norm``: the L2 norm of that pre-normalisation embedding of the face itself (never of the
  flip-sum), the MagFace-style quality baseline;
* ``quality`` (b,): the QAN scores S_hat_i (Eq. 6);
* ``overall``: :func:`cqa_core.explain.quality.overall_quality` on S_hat and the attention maps
  upsampled to 112 x 112, exactly the reading the dashboard header shows;
* ``cal``: the face's CAL penalty, the mean over i != j of the Eq. 2 pair terms
  (:func:`cqa_core.losses.cal_penalty_matrix`, paper sigma / t, per-pixel reduction), the same
  number as ``FaceAnalysis.cal``.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from cqa_core.explain.quality import overall_quality
from cqa_core.explain.tensors import upsample
from cqa_core.losses import cal_penalty_matrix
from cqa_core.preprocess import normalize


@dataclass
class FaceScores:
    """Readings of N faces (every array leads with the face axis)."""

    embedding: np.ndarray  # (N, D) float32
    norm: np.ndarray  # (N,)
    quality: np.ndarray  # (N, b)
    overall: np.ndarray  # (N,)
    cal: np.ndarray  # (N,)

    def take(self, index: np.ndarray) -> FaceScores:
        """The readings of faces ``index`` (any integer array)."""
        return FaceScores(**{f.name: getattr(self, f.name)[index] for f in fields(self)})

    @staticmethod
    def concat(parts: list[FaceScores]) -> FaceScores:
        return FaceScores(**{f.name: np.concatenate([getattr(p, f.name) for p in parts]) for f in fields(FaceScores)})


def scores_of_output(out: Any) -> FaceScores:
    """:class:`FaceScores` of one batch from a CQAOutput (no flip)."""
    emb = out.embedding.float()  # (B, D)
    maps = out.attention_maps.float()  # (B, b, h, w)
    q = out.quality.float().cpu().numpy()  # (B, b)
    maps112 = upsample(maps, 112).cpu().numpy()  # (B, b, 112, 112)
    pen = cal_penalty_matrix(maps)  # (B, b, b)
    b = pen.shape[-1]
    off = ~torch.eye(b, dtype=torch.bool, device=pen.device)  # (b, b)
    cal = pen[:, off].mean(1) if b > 1 else pen.new_zeros(len(pen))  # (B,)
    return FaceScores(emb.cpu().numpy(), emb.norm(dim=1).cpu().numpy(), q, overall_quality(q, maps112),
                      cal.cpu().numpy())


def score_faces(model: torch.nn.Module, images: Any, batch_size: int = 64, flip: bool = False,
                device: str = "cpu", progress: bool = True) -> FaceScores:
    """Readings of many aligned faces.

    Args:
        model: a CQAFace (its output needs embedding, quality and attention_maps).
        images: uint8 RGB numpy (N, 112, 112, 3) or torch (N, 3, 112, 112).
        batch_size: faces per forward pass.
        flip: ``embedding`` becomes the flip-sum (insightface test-time flip); the other readings
            stay those of the face as given.
        device: where to run.
        progress: show a tqdm bar.
    """
    if isinstance(images, np.ndarray):
        if images.ndim != 4 or images.shape[-1] != 3:
            raise ValueError(f"numpy images must be (N, H, W, 3) uint8, got {images.shape}")
        images = torch.from_numpy(images).permute(0, 3, 1, 2)  # (N, 3, H, W)
    if len(images) == 0:
        raise ValueError("no faces to score")
    parts = []
    model.eval()
    with torch.inference_mode():
        for start in tqdm(range(0, len(images), batch_size), desc="score", unit="batch", disable=not progress):
            x = normalize(images[start:start + batch_size].to(device))  # (B, 3, 112, 112) in [-1, 1]
            part = scores_of_output(model(x))
            if flip:
                part.embedding = part.embedding + model(x.flip(-1)).embedding.float().cpu().numpy()  # (B, D)
            parts.append(part)
    return FaceScores.concat(parts)
