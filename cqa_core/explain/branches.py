"""A branch readout, explained: what the views show of a recognizer's branches (CQA-Face).

``Recognizer.read`` returns, beside the embeddings, the readout's output for the batch: for
CQA-Face its ``CQAOutput`` (attention maps M_i (N, b, h, w), QAN quality S_hat (N, b), relation
A (N, b, b), local features and the stem output). This module turns it into

* per face, a :class:`~cqa_core.explain.result.BranchAnalysis`: the maps at the chip size and on
  the photo, quality, relation, the CAL terms and the other diversity numbers, region shares;
* per pair, a :class:`~cqa_core.explain.result.BranchPair`: the exact branch decomposition of the
  cosine and leave-one-branch-out (``explain.decomposition``).

The analysis calls these for any recognizer whose ``read`` returned a readout output; nothing here
asks which recognizer it is.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

from cqa_core.explain.decomposition import decompose_outputs
from cqa_core.explain.diversity import diversity_of_maps
from cqa_core.explain.quality import region_shares
from cqa_core.explain.render import warp_to_photo
from cqa_core.explain.result import BranchAnalysis, BranchPair
from cqa_core.explain.tensors import to_numpy, upsample


class Placement(NamedTuple):
    """Where a face's chip lies on its photo."""

    photo: np.ndarray  # (H, W, 3) uint8
    affine: np.ndarray  # (2, 3) photo -> chip
    chip_is_photo: bool  # the chip is the photo itself (an aligned crop given as it is)


def branch_analyses(out: Any, size: int, placements: list[Placement]) -> list[BranchAnalysis]:
    """One :class:`BranchAnalysis` per face of a readout output of N faces, maps at ``size`` x ``size``."""
    att = to_numpy(upsample(out.attention_maps, size))  # (N, b, S, S)
    div = diversity_of_maps(out.attention_maps)
    shares = region_shares(att)  # region -> (N, b)
    quality, relation = to_numpy(out.quality), to_numpy(out.relation)  # (N, b), (N, b, b)
    result = []
    for n, p in enumerate(placements):
        h, w = p.photo.shape[:2]
        on_photo = att[n] if p.chip_is_photo else warp_to_photo(att[n], p.affine, (w, h))  # (b, H, W)
        result.append(BranchAnalysis(
            attention=att[n], attention_photo=on_photo, quality=quality[n], relation=relation[n],
            cal_matrix=div.penalty[n], gaussian=div.gaussian[n], iou=div.iou[n], entropy=div.entropy[n],
            coverage=div.coverage[n], cal=float(div.cal[n]), region_shares={k: v[n] for k, v in shares.items()}))
    return result


def of_face(out: Any, n: int) -> Any:
    """Face ``n`` of a readout output, as an output of one face (a batch of 1)."""
    return type(out)(*(t[n:n + 1] for t in out))


def branch_pair(readout: Any, out_a: Any, out_b: Any) -> BranchPair:
    """The exact branch decomposition of cos(e_a, e_b) from two faces' readout outputs."""
    dec = decompose_outputs(readout.model, out_a, out_b)
    return BranchPair(decomposition=dec.matrix[0], leave_one_out=dec.leave_one_out[0])
