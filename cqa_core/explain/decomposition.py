"""Exact decomposition of a pair's cosine similarity into branch-by-branch terms.

At eval time the embedding is affine in the concatenated quality-weighted branch features
z = concat_i(S_hat_i P_i) (dropout is the identity, BN uses running statistics):

    e   = BN(W_fc z + b_fc) = W z + c,  W = diag(g) W_fc,  c = g (b_fc - mean) + beta,
          g = gamma / sqrt(var + eps)
    e   = sum_i u_i + c,   u_i = W[:, iC:(i+1)C] z_i                        (b terms + bias)

so with u_b = c as term b,

    cos(e_a, e_b) = sum_{i,j in 0..b} <u_a_i, u_b_j> / (|e_a| |e_b|)        a (b+1)x(b+1) matrix.

Leave-one-branch-out: the similarity with branch i's term dropped from both embeddings,
cos(e_a - u_a_i, e_b - u_b_i). QAN is *not* re-run: the other branches keep the quality scores
they had with branch i present, so the number isolates branch i's own contribution to the sum
(re-running QAN on zeroed features would also change every other branch's weight).
:func:`leave_one_out_rerun` gives that other number (P_i = 0 fed through the real QAN + FC + BN)
for comparison; the two are equal when QAN is off.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch

from cqa_core.explain.common import ExplainError
from cqa_core.explain.tensors import as_batch, in_eval_mode, model_device, to_numpy


def folded_head(model: torch.nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
    """(W (512, b*C), c (512,)) with embedding = W z + c at eval time (BN folded into the FC)."""
    if model.training:
        raise ExplainError("the decomposition is exact only in eval mode; call model.eval() first")
    fc, bn = model.fc, model.features
    g = bn.weight / torch.sqrt(bn.running_var + bn.eps)  # (512,)
    w = fc.weight * g[:, None]  # (512, b*C)
    c = g * (fc.bias - bn.running_mean) + bn.bias  # (512,)
    return w, c


def branch_terms(model: torch.nn.Module, out) -> torch.Tensor:
    """Per-branch embedding terms u (B, b+1, 512): u_i = W_i z_i, last row the bias c."""
    w, c = folded_head(model)
    z = out.local_features * out.quality.unsqueeze(-1)  # (B, b, C) S_hat_i P_i (Eq. 7)
    bsz, b, ch = z.shape
    wb = w.view(w.shape[0], b, ch)  # (512, b, C)
    u = torch.einsum("dkc,bkc->bkd", wb, z)  # (B, b, 512)
    return torch.cat([u, c.expand(bsz, 1, -1)], dim=1)  # (B, b+1, 512)


class Decomposition(NamedTuple):
    """The pair similarity split into branch terms."""

    similarity: np.ndarray  # (B,) cos(e_a, e_b) from the model's embeddings
    matrix: np.ndarray  # (B, b+1, b+1) <u_a_i, u_b_j> / (|e_a||e_b|); sums to ``similarity``
    leave_one_out: np.ndarray  # (B, b) cos(e_a - u_a_i, e_b - u_b_i)
    residual: np.ndarray  # (B,) max |sum_i u_i - e| over the embedding (should be ~1e-6)


@in_eval_mode
def decompose(model: torch.nn.Module, images_a, images_b) -> Decomposition:
    """Decompose cos(e_a, e_b) into a (b+1) x (b+1) matrix of branch-pair terms.

    Args:
        model: CQAFace in eval mode.
        images_a: faces a (B).
        images_b: faces b (B or 1).

    Returns:
        A :class:`Decomposition` of numpy arrays.
    """
    device = model_device(model)
    xa, xb = as_batch(images_a, device), as_batch(images_b, device)  # (B, 3, H, W), (B'|1, ...)
    with torch.no_grad():
        oa, ob = model(xa), model(xb)
        return decompose_outputs(model, oa, ob)


def decompose_outputs(model: torch.nn.Module, oa, ob) -> Decomposition:
    """:func:`decompose` from two CQAOutputs already computed (B and B or 1 faces)."""
    with torch.no_grad():
        ua, ub = branch_terms(model, oa), branch_terms(model, ob)  # (B, b+1, 512), (B'|1, b+1, 512)
        ea, eb = oa.embedding, ob.embedding  # (B, 512), (B'|1, 512)
        residual = (ua.sum(1) - ea).abs().amax(dim=1)  # (B,)
        na, nb = ea.norm(dim=1), eb.norm(dim=1)  # (B,), (B'|1,)
        matrix = torch.einsum("bid,bjd->bij", ua, ub.expand_as(ua)) / (na * nb)[:, None, None]  # (B, b+1, b+1)
        sim = torch.nn.functional.cosine_similarity(ea, eb.expand_as(ea), dim=1)  # (B,)
        da, db = ea[:, None] - ua[:, :-1], eb[:, None] - ub[:, :-1]  # (B, b, 512) e minus branch i
        loo = torch.nn.functional.cosine_similarity(da, db.expand_as(da), dim=2)  # (B, b)
    return Decomposition(to_numpy(sim), to_numpy(matrix), to_numpy(loo), to_numpy(residual))


@in_eval_mode
def leave_one_out_rerun(model: torch.nn.Module, images_a, images_b) -> np.ndarray:
    """cos(e_a, e_b) with P_i = 0 in both faces, re-running QAN, FC and BN: (B, b).

    Unlike ``Decomposition.leave_one_out`` the other branches' quality scores may change too.
    """
    device = model_device(model)
    xa, xb = as_batch(images_a, device), as_batch(images_b, device)  # (B, 3, H, W), (B'|1, ...)
    with torch.no_grad():
        pa, pb = model(xa).local_features, model(xb).local_features  # (B, b, C), (B'|1, b, C)

        def head(p: torch.Tensor) -> torch.Tensor:
            weighted = model.qan(p).weighted if model.qan is not None else p  # (B, b, C) Eq. 7
            return model.features(model.fc(weighted.flatten(1)))  # (B, 512)

        sims = []
        for i in range(pa.shape[1]):
            za, zb = pa.clone(), pb.clone()
            za[:, i], zb[:, i] = 0.0, 0.0
            ea, eb = head(za), head(zb)  # (B, 512), (B'|1, 512)
            sims.append(torch.nn.functional.cosine_similarity(ea, eb.expand_as(ea), dim=1))  # (B,)
    return to_numpy(torch.stack(sims, dim=1))  # (B, b)
