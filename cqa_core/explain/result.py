"""What an analysis takes and returns: numpy only, no torch.

``Photo`` (pixels whose digest is known), ``FaceAnalysis`` (one face, its ``BranchAnalysis`` where the
recognizer has branches), ``PairAnalysis`` (two faces), ``Check`` and
``MaskEffect`` are plain containers of numpy arrays, so a dashboard kernel that shows analyses made
by the analysis service never imports torch. Their wire format is ``workbench.wire``.
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


class Check(NamedTuple):
    """A map method's check of one face's map, shown beside it (integrated gradients' completeness).

    Any method may return checks (``methods.PairMaps.checks``); the views show ``text`` under the map,
    in red when ``ok`` is False, and ``analysis.json`` keeps ``values``.
    """

    ok: bool  # the map passed its own check (IG: it adds up to the change in similarity within 1 %)
    text: str  # one line in plain words
    values: dict[str, float]  # the numbers behind it


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
class BranchAnalysis:
    """What a recognizer's branch readout shows of one face (CQA-Face: ``explain.branches``)."""

    attention: np.ndarray  # (b, 112, 112) M_i upsampled, in [0, 1]
    attention_photo: np.ndarray  # (b, H, W) M_i warped onto the photo
    quality: np.ndarray  # (b,) S_hat_i
    relation: np.ndarray  # (b, b) A
    cal_matrix: np.ndarray  # (b, b) CAL pair terms (Eq. 2)
    gaussian: np.ndarray  # (b, b) Gaussian similarity before the hinge
    iou: np.ndarray  # (b, b) top-20 % region IoU
    entropy: np.ndarray  # (b,)
    coverage: np.ndarray  # (b,)
    cal: float  # mean off-diagonal CAL term = cal_loss of this face
    region_shares: dict[str, np.ndarray] = field(default_factory=dict)  # region -> (b,)

    @property
    def count(self) -> int:
        return int(self.quality.shape[0])

    @property
    def mean_iou(self) -> float:
        """Mean top-20 % IoU over branch pairs i != j (the diagonal, a map against itself, is 1)."""
        b = self.iou.shape[0]
        return float(self.iou[~np.eye(b, dtype=bool)].mean()) if b > 1 else 0.0


@dataclass
class FaceAnalysis:
    """What the workbench shows for one face, for any recognizer."""

    photo: np.ndarray  # (H, W, 3) uint8 as given
    aligned: np.ndarray  # (S, S, 3) uint8: the recognizer's chip (112 x 112 for CQA-Face)
    affine: np.ndarray  # (2, 3) photo (x, y) -> chip (x, y)
    align_method: str  # "identity" | "mtcnn" | "center"
    embedding: np.ndarray  # (D,)
    embedding_norm: float  # a plain recognizer's only quality reading
    model: str = ""  # the recognizer's name
    kind: str = "cqa-face"  # its kind: "cqa-face" | "arcface" | "onnx" | "dlib" | "torch"
    maps: dict[str, np.ndarray] = field(default_factory=dict)  # single-face method -> (S, S) ("attention")
    branches: BranchAnalysis | None = None  # the recognizer's branch readout, when it has one

    def overlays(self, on_photo: bool = True, alpha: float = 0.5) -> list:
        """Per-branch heatmap overlays (``render.BranchOverlay``) titled with their quality scores."""
        br = self.branches
        if br is None:
            return []
        if on_photo:
            support = None if self.align_method == "identity" else crop_support(
                self.affine, self.photo.shape[1::-1], self.aligned.shape[0])
            return branch_overlays(self.photo, br.attention_photo, br.quality, alpha, support)
        return branch_overlays(self.aligned, br.attention, br.quality, alpha)

    def on_photo(self, chip_map: np.ndarray) -> np.ndarray:
        """A map (S, S) of this face's chip warped onto the photo -> (H, W)."""
        h, w = self.photo.shape[:2]
        return warp_to_photo(chip_map, self.affine, (w, h))


@dataclass
class BranchPair:
    """The exact branch decomposition of a pair's cosine (``explain.decomposition``)."""

    decomposition: np.ndarray  # (b+1, b+1) <u_a_i, u_b_j> / (|e_a||e_b|), sums to the similarity
    leave_one_out: np.ndarray  # (b,) the similarity with branch i's term dropped from both faces


@dataclass
class PairAnalysis:
    """Two faces under one recognizer: the similarity and what explains it.

    ``maps[method]`` is (2, S, S): row 0 explains face a against b, row 1 face b against a, each on
    its own face's chip; ``checks[method]`` the method's checks of those two maps, where it has any.
    """

    a: FaceAnalysis
    b: FaceAnalysis
    similarity: float  # cos(e_a, e_b)
    maps: dict[str, np.ndarray] = field(default_factory=dict)
    checks: dict[str, list[Check]] = field(default_factory=dict)
    branches: BranchPair | None = None  # the recognizer's branch decomposition, when it has one

    def face(self, side: int) -> FaceAnalysis:
        return (self.a, self.b)[side]

    def map_on_photo(self, method: str, side: int = 0) -> np.ndarray:
        """The pair map of face ``side`` (0 = a, 1 = b) warped onto its photo -> (H, W)."""
        return self.face(side).on_photo(self.maps[method][side])
