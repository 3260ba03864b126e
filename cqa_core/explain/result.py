"""What an analysis takes and returns: numpy only, no torch.

``Photo`` (pixels whose digest is known), ``FaceAnalysis`` (one face, or a pair), ``IGCheck`` and
``MaskEffect`` are plain containers of numpy arrays, so a dashboard kernel that shows analyses made
by the analysis service never imports torch. Their wire format is ``workbench.service.wire``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np

from cqa_core.explain.render import branch_overlays, crop_support, warp_to_photo


class Photo(NamedTuple):
    """Pixels whose digest the caller already knows (e.g. the sha1 of the file bytes they came from)."""

    pixels: np.ndarray  # (H, W, 3) uint8 RGB
    digest: str


class IGCheck(NamedTuple):
    """How well a face's integrated-gradients map adds up: sum(map) should equal ``gap``."""

    delta: float  # sum of attributions - gap
    gap: float  # cos(e(x), e_other) - cos(e(baseline), e_other)
    steps: int  # steps used
    converged: bool  # |delta| <= max(1 % of |gap|, 1e-4) before the step cap

    @property
    def relative(self) -> float:
        """|delta| / |gap| (inf when the gap is 0)."""
        return abs(self.delta) / abs(self.gap) if self.gap else float("inf")

    def describe(self) -> str:
        """'IG delta -0.0001 (0.3 % of gap -0.0211, 128 steps)', flagged when the cap was hit."""
        text = f"IG delta {self.delta:+.4f} ({100 * self.relative:.1f} % of gap {self.gap:+.4f}, {self.steps} steps)"
        return text if self.converged else text + " NOT converged: step cap hit"


class MaskEffect(NamedTuple):
    """How a synthetic mask changes each branch (clean vs masked face)."""

    quality_clean: np.ndarray  # (b,)
    quality_masked: np.ndarray  # (b,)
    quality_delta: np.ndarray  # (b,) masked - clean
    mask_share_clean: np.ndarray  # (b,) attention share inside the mask region, clean face
    mask_share_masked: np.ndarray  # (b,) same on the masked face
    similarity: float  # cos(e_clean, e_masked)
    masked_image: np.ndarray  # (112, 112, 3) uint8
    alpha: np.ndarray  # (112, 112) float mask opacity


@dataclass
class FaceAnalysis:
    """What the workbench shows for one face (and, with a second face, for the pair)."""

    photo: np.ndarray  # (H, W, 3) uint8 as given
    aligned: np.ndarray  # (S, S, 3) uint8: the recognizer's chip (112 x 112 for CQA-Face)
    affine: np.ndarray  # (2, 3) photo (x, y) -> chip (x, y)
    align_method: str  # "identity" | "mtcnn" | "center"
    embedding: np.ndarray  # (D,)
    embedding_norm: float  # a plain recognizer's only quality reading
    model: str = ""  # the recognizer's name
    kind: str = "cqa-face"  # its kind: "cqa-face" | "arcface" | "onnx" | "dlib" | "torch"
    # CQA-Face's branches and QAN (None for any other recognizer)
    attention: np.ndarray | None = None  # (b, 112, 112) M_i upsampled, in [0, 1]
    attention_photo: np.ndarray | None = None  # (b, H, W) M_i warped onto the photo
    quality: np.ndarray | None = None  # (b,) S_hat_i
    relation: np.ndarray | None = None  # (b, b) A
    cal_matrix: np.ndarray | None = None  # (b, b) CAL pair terms (Eq. 2)
    gaussian: np.ndarray | None = None  # (b, b) Gaussian similarity before the hinge
    iou: np.ndarray | None = None  # (b, b) top-20 % region IoU
    entropy: np.ndarray | None = None  # (b,)
    coverage: np.ndarray | None = None  # (b,)
    cal: float | None = None  # mean off-diagonal CAL term = cal_loss of this face
    region_shares: dict[str, np.ndarray] = field(default_factory=dict)  # region -> (b,)
    # pair fields (None without a second face)
    other: FaceAnalysis | None = None
    similarity: float | None = None
    decomposition: np.ndarray | None = None  # (b+1, b+1), sums to ``similarity``
    leave_one_out: np.ndarray | None = None  # (b,)
    maps: dict[str, np.ndarray] = field(default_factory=dict)  # method -> (112, 112) of this face
    maps_other: dict[str, np.ndarray] = field(default_factory=dict)  # method -> (112, 112) of the other
    ig: IGCheck | None = None  # completeness of this face's "ig" map (None until "ig" is computed)

    @property
    def branches(self) -> bool:
        """True for a CQA-Face analysis (branch attention, QAN quality, CAL)."""
        return self.attention is not None

    @property
    def mean_iou(self) -> float:
        """Mean top-20 % IoU over branch pairs i != j (the diagonal, a map against itself, is 1)."""
        b = self.iou.shape[0]
        return float(self.iou[~np.eye(b, dtype=bool)].mean()) if b > 1 else 0.0

    def overlays(self, on_photo: bool = True, alpha: float = 0.5) -> list:
        """Per-branch heatmap overlays (``render.BranchOverlay``) titled with their quality scores."""
        if on_photo:
            support = None if self.align_method == "identity" else crop_support(
                self.affine, self.photo.shape[1::-1], self.aligned.shape[0])
            return branch_overlays(self.photo, self.attention_photo, self.quality, alpha, support)
        return branch_overlays(self.aligned, self.attention, self.quality, alpha)

    def map_on_photo(self, method: str) -> np.ndarray:
        """A pair map (S, S) of this face's chip warped onto the photo -> (H, W)."""
        h, w = self.photo.shape[:2]
        return warp_to_photo(self.maps[method], self.affine, (w, h))
