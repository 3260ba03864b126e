"""How different the b attention maps are: the quantities CAL (Eq. 2) acts on, and simple overlaps.

For one face with maps M (b, h, w):

* ``penalty[i, j]``: the term Eq. 2 sums for pair (i, j), computed by ``cqa_core.losses.cal_penalty``
  itself on the two maps (default ``reduction="pixel"``: mean_{h,w} max(0, exp(-(M_i-M_j)^2/sigma) - t)).
  Its mean over i < j is exactly ``cal_loss(M)``. The diagonal is 1 - t (a map against itself).
* ``gaussian[i, j]``: the same with t = 0, i.e. the Gaussian similarity before the hinge, in [0, 1].
* ``iou[i, j]``: IoU of the top ``top`` fraction of locations of M_i and M_j (ceil(top * h * w)
  locations each; ties broken by position).
* ``entropy[i]``: Shannon entropy of M_i / sum(M_i) divided by log(h w): 1 = uniform, 0 = one spot.
* ``coverage[i]``: fraction of locations with M_i >= 0.5.
* ``map_correlation``: mean Pearson correlation of M_i and M_j over i != j (level-free; not in
  ``DiversityStats``, used by ``benchmarks/branch_maps.py``).

No formula of Eq. 2 is repeated here: every Gaussian number comes from ``cqa_core.losses.cal_penalty_matrix``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import torch
from tqdm.auto import tqdm

from cqa_core.explain.tensors import as_batch, in_eval_mode, model_device, to_numpy
from cqa_core.losses import cal_penalty_matrix


@dataclass
class DiversityStats:
    """Diversity numbers of B faces (arrays lead with the face axis)."""

    penalty: np.ndarray  # (B, b, b) CAL pair terms (hinged, Eq. 2)
    gaussian: np.ndarray  # (B, b, b) Gaussian similarity, t = 0
    iou: np.ndarray  # (B, b, b) top-k region IoU
    entropy: np.ndarray  # (B, b) normalised entropy
    coverage: np.ndarray  # (B, b) fraction of locations >= 0.5
    cal: np.ndarray  # (B,) mean off-diagonal penalty = cal_loss of that face
    mean_gaussian: np.ndarray  # (B,) mean off-diagonal Gaussian similarity
    mean_iou: np.ndarray  # (B,) mean off-diagonal IoU

    def summary(self) -> dict[str, float]:
        """Means over faces of the per-face scalars and per-branch numbers."""
        return {
            "faces": int(self.cal.shape[0]),
            "cal": float(self.cal.mean()),
            "mean_gaussian": float(self.mean_gaussian.mean()),
            "mean_iou": float(self.mean_iou.mean()),
            "entropy": float(self.entropy.mean()),
            "coverage": float(self.coverage.mean()),
        }


def topk_masks(maps: torch.Tensor, top: float) -> torch.Tensor:
    """(..., h, w) maps -> boolean masks of their top ceil(top * h * w) locations."""
    flat = maps.flatten(-2)  # (..., h*w)
    k = max(1, math.ceil(top * flat.shape[-1]))
    idx = flat.topk(k, dim=-1).indices  # (..., k)
    mask = torch.zeros_like(flat, dtype=torch.bool).scatter_(-1, idx, True)  # (..., h*w)
    return mask.view_as(maps)


def _iou(masks: torch.Tensor) -> torch.Tensor:
    """(B, b, h, w) boolean masks -> (B, b, b) pairwise IoU."""
    m = masks.flatten(2).float()  # (B, b, h*w)
    inter = torch.einsum("bin,bjn->bij", m, m)  # (B, b, b)
    area = m.sum(-1)  # (B, b)
    return inter / (area[:, :, None] + area[:, None, :] - inter).clamp_min(1.0)  # (B, b, b)


def _off_diagonal_mean(mat: torch.Tensor) -> torch.Tensor:
    """(B, b, b) -> (B,) mean over i != j (0 when b = 1)."""
    b = mat.shape[-1]
    if b < 2:
        return mat.new_zeros(mat.shape[0])
    off = ~torch.eye(b, dtype=torch.bool, device=mat.device)  # (b, b)
    return mat[:, off].mean(dim=1)  # (B,)


def map_correlation(maps: torch.Tensor) -> torch.Tensor:
    """(B, b, h, w) maps -> (B,) mean Pearson correlation over branch pairs i != j.

    Level- and scale-free, unlike Eq. 2's Gaussian: the same shape at two brightness levels
    correlates 1, and a flat map counts 0 against any other.
    """
    f = maps.flatten(2)  # (B, b, h*w)
    f = f - f.mean(-1, keepdim=True)  # (B, b, h*w)
    f = f / f.norm(dim=-1, keepdim=True).clamp_min(1e-9)  # (B, b, h*w) unit rows; a flat map stays 0
    return _off_diagonal_mean(torch.einsum("bin,bjn->bij", f, f))  # (B, b, b) -> (B,)


def diversity_of_maps(maps: torch.Tensor | np.ndarray, sigma: float = 0.01, t: float = 0.2,
                      reduction: str = "pixel", top: float = 0.2) -> DiversityStats:
    """Diversity numbers from attention maps (B, b, h, w) in [0, 1] (see the module docstring)."""
    maps = torch.as_tensor(maps).float()  # (B, b, h, w)
    with torch.no_grad():
        penalty = cal_penalty_matrix(maps, sigma, t, reduction)  # (B, b, b)
        gaussian = cal_penalty_matrix(maps, sigma, 0.0, reduction)  # (B, b, b)
        iou = _iou(topk_masks(maps, top))  # (B, b, b)
        p = maps.flatten(2) / maps.flatten(2).sum(-1, keepdim=True).clamp_min(1e-12)  # (B, b, h*w)
        ent = -(p * p.clamp_min(1e-12).log()).sum(-1) / math.log(max(p.shape[-1], 2))  # (B, b)
        cov = (maps.flatten(2) >= 0.5).float().mean(-1)  # (B, b)
        means = [_off_diagonal_mean(x) for x in (penalty, gaussian, iou)]  # 3 x (B,)
    return DiversityStats(*(to_numpy(x) for x in (penalty, gaussian, iou, ent, cov, *means)))


@in_eval_mode
def diversity(model: torch.nn.Module, images, **kwargs) -> DiversityStats:
    """Diversity numbers of the model's attention maps on a batch of faces."""
    with torch.no_grad():
        maps = model(as_batch(images, model_device(model))).attention_maps  # (B, b, h, w)
    return diversity_of_maps(maps, **kwargs)


@in_eval_mode
def dataset_diversity(model: torch.nn.Module, images: Iterable, batch_size: int = 32, progress: bool = True,
                      **kwargs) -> DiversityStats:
    """Diversity over a dataset: an iterable of aligned faces (uint8 HxWx3 arrays or (3, H, W) tensors).

    Faces are batched ``batch_size`` at a time; the result holds every face (call ``.summary()``).
    """
    parts: list[DiversityStats] = []
    batch: list = []

    def flush() -> None:
        if batch:
            x = torch.stack(batch) if isinstance(batch[0], torch.Tensor) else batch
            parts.append(diversity(model, x, **kwargs))
            batch.clear()

    for image in tqdm(images, desc="diversity", disable=not progress):
        batch.append(image)
        if len(batch) == batch_size:
            flush()
    flush()
    if not parts:
        raise ValueError("dataset_diversity got no images")
    fields = DiversityStats.__dataclass_fields__
    return DiversityStats(**{f: np.concatenate([getattr(p, f) for p in parts]) for f in fields})
