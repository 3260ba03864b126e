"""An exact spatial decomposition of a pair's cosine: each location's share of cos(e_a, e_b).

Stylianou, Souvenir & Pless, "Visualizing Deep Similarity Networks", WACV 2019: when the embedding
is the global average pool of the last convolutional map F (C, h, w), e = (1 / hw) sum_l F_l, the
dot product of two embeddings splits over the locations l of one image,

    e_a . e_b = sum_l (1 / hw) F_a,l . e_b,

so each location of face a gets its exact share of the similarity with face b. The same holds for
any head that is affine in F (batch-norm and dropout in eval mode, flatten or global pooling, a
linear layer, a final BatchNorm1d): folded into one map e = W F + c with W (D, C, h, w),

    u_l = W[:, :, l] F[:, l]                          (D,)  the embedding's term from location l
    e   = sum_l u_l + c
    cos(e_a, e_b) = sum_l <u_a,l, e_b> / (|e_a||e_b|)  +  <c, e_b> / (|e_a||e_b|)
                    `---- map of face a, (h, w) ----'      `--- remainder (bias) ---'

and the same with a and b swapped for face b's map. A flatten + linear head (insightface's iResNet:
bn2 -> dropout -> flatten -> fc -> features) gives each location its own weights; a pooled head
shares them. The terms are signed: a location whose features point away from the other face
lowers the similarity.

CQA-Face (P_i = GAP(X * M_i), concat, FC-512 + BN) is affine in X only for fixed attention maps M_i
and quality scores S_hat_i (both are computed from X). Given each face's own maps and scores, the
term of location l is sum_i S_hat_i M_i(l) W_i X(:, l) / hw, which is exact for those maps: the
terms plus the bias remainder sum to the model's cosine. ``branches`` splits each location's term
by branch; summed over the locations, branch i gives row i of the branch decomposition
(:mod:`cqa_core.explain.decomposition`) summed over its columns.

Head detection (:func:`find_head`) records, with temporary forward hooks, the leaf modules that run
after the named layer, folds them (:func:`fold_head`) and checks that the folded map reproduces the
model's embedding; a head that is not affine is refused in one line naming what was found. A head
the hooks cannot see (an ONNX graph with reshapes) can be declared: ``fold_head(modules, shape)``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import nn

from cqa_core.explain.common import ExplainError
from cqa_core.explain.decomposition import folded_head
from cqa_core.explain.tensors import eval_mode, upsample
from cqa_core.model.cqa_face import CQAFace
from cqa_core.recognizers.base import Recognizer, find_layer

PASS_THROUGH = ("Dropout", "Identity", "Flatten")  # class-name parts of modules that only reshape (eval mode)


class SimilarityMap(NamedTuple):
    """The cosine of a pair split over the locations of each face (row 0: a against b, row 1: b against a)."""

    terms: np.ndarray  # (2, h, w) float64 <u_l, e_other> / (|e_a||e_b|); a row plus its remainder = cosine
    remainder: np.ndarray  # (2,) float64 the bias term <c, e_other> / (|e_a||e_b|) of each row
    cosine: float  # cos(e_a, e_b) of the model's own embeddings
    maps: np.ndarray  # (2, S, S) float32 the terms upsampled bilinearly to the chip (cosine per feature cell)
    head: str  # what was folded, e.g. "bn2 -> dropout -> fc -> features"
    branches: np.ndarray | None = None  # (2, b, h, w) CQA-Face: the terms by branch (their sum over b = terms)


@dataclass(frozen=True)
class LinearHead:
    """The affine head after a spatial layer folded into one map: embedding = weight . F + bias.

    Attributes:
        weight: (D, C, h, w) float64.
        bias: (D,) float64.
        path: the modules folded, in order ("bn2 -> dropout -> fc -> features").
    """

    weight: torch.Tensor
    bias: torch.Tensor
    path: str

    def embed(self, feats: torch.Tensor) -> torch.Tensor:
        """Features (N, C, h, w) -> embeddings (N, D) float64 through the folded map."""
        return torch.einsum("dchw,nchw->nd", self.weight, _cpu64(feats)) + self.bias  # (N, D)


def _kind(m: nn.Module) -> str:
    """'bn' | 'linear' | 'pool' | 'pass', or a one-line refusal naming the module."""
    if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
        if m.running_mean is None or m.running_var is None:
            raise ExplainError(f"the head is not linear: {type(m).__name__} without running statistics "
                               "normalises by the batch")
        return "bn"
    if isinstance(m, nn.Linear):
        return "linear"
    if isinstance(m, nn.AdaptiveAvgPool2d) and m.output_size in (1, (1, 1)):
        return "pool"
    if type(m).__name__ == "OnnxGlobalAveragePool":
        return "pool"
    if any(part in type(m).__name__ for part in PASS_THROUGH):
        return "pass"
    raise ExplainError(f"the head is not linear: found {type(m).__name__} ({m}) after the spatial layer; "
                       "a similarity map needs batch-norm, dropout, flatten or pooling, then linear layers")


def fold_head(modules: Sequence[nn.Module], shape: tuple[int, int, int], names: Sequence[str] | None = None) -> LinearHead:
    """Fold an affine chain of modules, run in order on features (C, h, w), into one :class:`LinearHead`.

    A flatten is implied wherever a module needs vectors (a Linear or BatchNorm1d after a 4-d map).
    Batch-norm uses its running statistics and dropout is the identity (eval mode); the fold is
    float64 on the CPU.

    Args:
        modules: the head, in the order it runs (BatchNorm1d/2d, Dropout, Identity, Flatten,
            AdaptiveAvgPool2d(1), Linear).
        shape: (C, h, w) of the spatial layer's output.
        names: what to call the modules in ``path`` (default: their class names).

    Raises:
        ExplainError: a module that is not affine, or shapes that do not chain.
    """
    kinds = [_kind(m) for m in modules]
    ins, outs = _shapes(modules, tuple(shape))
    if len(outs[-1]) != 1:
        raise ExplainError(f"the head ends in a {outs[-1]} tensor, not an embedding vector")
    dim = outs[-1][0]
    w = torch.eye(dim, dtype=torch.float64)  # (D, D): d e / d (the last module's output)
    b = torch.zeros(dim, dtype=torch.float64)  # (D,)
    for m, k, s_in, s_out in reversed(list(zip(modules, kinds, ins, outs, strict=True))):
        w = w.reshape(dim, *s_out)  # (D, *out)
        if k == "bn":
            g, t = _bn_affine(m)  # (C,), (C,): y = g x + t per channel
            view = (1, -1) + (1,) * (len(s_out) - 1)  # broadcast over the channel axis
            b = b + (w * t.view(view)).flatten(1).sum(1)  # (D,)
            w = w * g.view(view)  # (D, *out)
        elif k == "linear":
            if m.bias is not None:
                b = b + w @ _cpu64(m.bias)  # (D,)
            w = w @ _cpu64(m.weight)  # (D, in)
        elif k == "pool":
            w = w.reshape(dim, s_in[0], 1, 1).expand(dim, *s_in) / (s_in[-1] * s_in[-2])  # (D, C, h, w)
        w = w.reshape(dim, *s_in)  # (D, *in)
    label = " -> ".join(names if names is not None else [type(m).__name__ for m in modules])
    return LinearHead(w.reshape(dim, *shape).contiguous(), b, label)


def _shapes(modules: Sequence[nn.Module], shape: tuple[int, ...]) -> tuple[list[tuple[int, ...]], list[tuple[int, ...]]]:
    """Input and output shape (no batch) of each module, found by running zeros through them in eval mode."""
    ins, outs = [], []
    x = torch.zeros(1, *shape)  # (1, C, h, w)
    for m in modules:
        p = next(iter(m.parameters()), None)
        x = x.to(p.device) if p is not None else x
        if x.dim() > 2 and (isinstance(m, (nn.Linear, nn.BatchNorm1d))):
            x = x.flatten(1)  # (1, n) the implied flatten
        ins.append(tuple(x.shape[1:]))
        try:
            with eval_mode(m), torch.no_grad():
                x = m(x)
        except RuntimeError as exc:
            raise ExplainError(f"the head does not chain: {type(m).__name__} on {ins[-1]}: "
                               f"{str(exc).splitlines()[0]}") from exc
        outs.append(tuple(x.shape[1:]))
    return ins, outs


def _cpu64(t: torch.Tensor) -> torch.Tensor:
    return t.detach().double().cpu()


def _bn_affine(m: nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
    """(g, t) with BN(x) = g x + t per channel in eval mode: g = gamma / sqrt(var + eps), t = beta - mean g."""
    g = 1.0 / torch.sqrt(_cpu64(m.running_var) + m.eps)  # (C,)
    g = g * _cpu64(m.weight) if m.weight is not None else g
    beta = _cpu64(m.bias) if m.bias is not None else torch.zeros_like(g)  # (C,)
    return g, beta - _cpu64(m.running_mean) * g


def _catch(module: nn.Module, layer: str, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, list[tuple[str, nn.Module]]]:
    """One forward with hooks: (layer output F (N, C, h, w), embedding (N, D), leaves run after the layer)."""
    target = find_layer(module, layer)
    caught: list[torch.Tensor] = []
    after: list[tuple[str, nn.Module]] = []

    def on_layer(_m: nn.Module, _inp: Any, out: Any) -> None:
        caught.append(out)

    def on_leaf(m: nn.Module, _inp: Any, _out: Any, name: str = "") -> None:
        if caught and (name, m) not in after:
            after.append((name, m))

    handles = [target.register_forward_hook(on_layer)]
    for name, sub in module.named_modules():
        if not list(sub.children()) and not name.startswith(layer + ".") and name != layer:
            handles.append(sub.register_forward_hook(lambda m, i, o, name=name: on_leaf(m, i, o, name)))
    try:
        with eval_mode(module), torch.no_grad():
            emb = module(x)  # (N, D)
    finally:
        for h in handles:
            h.remove()
    if len(caught) != 1 or not isinstance(caught[0], torch.Tensor) or caught[0].dim() != 4:
        raise ExplainError(f"layer {layer!r} must run once and output a (N, C, h, w) map")
    if not isinstance(emb, torch.Tensor) or emb.dim() != 2:
        raise ExplainError("the module must return embeddings (N, D)")
    return caught[0], emb, after


def find_head(module: nn.Module, layer: str, x: torch.Tensor) -> LinearHead:
    """Detect and fold the head after ``layer`` of a module returning embeddings, checked on ``x``.

    Raises:
        ExplainError: no module runs after the layer, one is not affine, or the folded map does
            not reproduce the module's embedding of ``x`` (an operation outside modules, a skip).
    """
    feats, emb, after = _catch(module, layer, x)
    head = _detected(after, feats, layer)
    _check(head, feats, emb, layer)
    return head


def _detected(after: list[tuple[str, nn.Module]], feats: torch.Tensor, layer: str) -> LinearHead:
    if not after:
        raise ExplainError(f"no module runs after layer {layer!r}: declare the head (fold_head)")
    return fold_head([m for _, m in after], tuple(feats.shape[1:]), [n for n, _ in after])


def _check(head: LinearHead, feats: torch.Tensor, emb: torch.Tensor, layer: str) -> None:
    """The folded head must give the module's embedding (float32 rounding allowed)."""
    off = float((head.embed(feats) - emb.double()).abs().max())
    if off > 1e-4 * float(emb.abs().max()) + 1e-5:
        raise ExplainError(f"the head after {layer!r} is not linear as found ({head.path}): its folded map "
                           f"misses the embedding by {off:.3g}; declare the head (fold_head)")


def _cqa(module: nn.Module) -> CQAFace | None:
    """The CQA-Face inside ``module`` (itself, or a wrapper's ``model``), else None."""
    if isinstance(module, CQAFace):
        return module
    inner = getattr(module, "model", None)
    return inner if isinstance(inner, CQAFace) else None


def _terms(per_loc: torch.Tensor, e: torch.Tensor, c: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(terms, remainder) of rows [a vs b, b vs a]: <u_l, e_other> (2, ..., h, w) and <c, e_other> (2,),
    both over |e_a||e_b|; e (2, D) the folded embeddings, c (D,) the bias."""
    norm = float(e[0].norm() * e[1].norm())
    return per_loc / norm, (e.flip(0) @ c) / norm  # e.flip(0): the partner of each row


def similarity_map(module: nn.Module, layer: str, x_a: torch.Tensor, x_b: torch.Tensor,
                   head: LinearHead | None = None) -> SimilarityMap:
    """The exact spatial decomposition of cos(e_a, e_b) at ``layer`` (module docstring).

    Args:
        module: CQA-Face (or a wrapper whose ``model`` is one; ``layer`` its stem), or any module
            returning embeddings whose head after ``layer`` is affine.
        layer: dotted name of the spatial layer (its output F: (N, C, h, w)).
        x_a: face a as model input (1, 3, S, S) (or (3, S, S)).
        x_b: face b, the same.
        head: a declared head (:func:`fold_head`); None detects it (:func:`find_head`).

    Returns:
        :class:`SimilarityMap`; ``terms[k].sum() + remainder[k]`` equals ``cosine`` (float64 sums).

    Raises:
        ExplainError: a head that is not affine, a CQA-Face layer other than the stem, bad shapes.
    """
    x = torch.cat([x_a.reshape(-1, *x_a.shape[-3:]), x_b.reshape(-1, *x_b.shape[-3:])])  # (2, 3, S, S)
    if x.shape[0] != 2:
        raise ExplainError(f"a similarity map explains one pair: give one face a and one face b, got {x.shape[0]}")
    cqa = _cqa(module)
    if cqa is not None:
        return _cqa_map(module, cqa, layer, x)
    feats, emb, after = _catch(module, layer, x)
    head = head or _detected(after, feats, layer)
    _check(head, feats, emb, layer)
    f = _cpu64(feats)  # (2, C, h, w)
    e = head.embed(f)  # (2, D) the folded embeddings (= the module's within float32 rounding)
    v = torch.einsum("dchw,bd->bchw", head.weight, e.flip(0))  # (2, C, h, w) W^T e_other
    terms, rem = _terms((v * f).sum(1), e, head.bias)  # (2, h, w), (2,)
    emb = emb.double()
    cos = float(torch.nn.functional.cosine_similarity(emb[:1], emb[1:], dim=1))
    return _result(terms, rem, cos, x.shape[-1], head.path)


def _cqa_map(module: nn.Module, model: CQAFace, layer: str, x: torch.Tensor) -> SimilarityMap:
    """CQA-Face: location terms sum_i S_hat_i M_i(l) W_i X(:, l) / hw for each face's own M and S_hat."""
    prefix = "" if module is model else next(n for n, m in module.named_children() if m is model) + "."
    if layer != prefix + "stem":
        raise ExplainError(f"CQA-Face's similarity map is exact over its stem output X; "
                           f"name layer {prefix + 'stem'!r}, not {layer!r}")
    with eval_mode(module), torch.no_grad():
        out = model(x)
        w, c = (_cpu64(t) for t in folded_head(model))  # (D, b*C), (D,) FC + BN folded
    feats, maps, q = _cpu64(out.feature_map), _cpu64(out.attention_maps), _cpu64(out.quality)  # (2,C,h,w), (2,b,h,w), (2,b)
    bsz, nb, h, wd = maps.shape
    z = (_cpu64(out.local_features) * q[..., None]).flatten(1)  # (2, b*C)
    e = z @ w.T + c  # (2, D) the folded embeddings
    v = torch.einsum("dkc,bd->bkc", w.view(w.shape[0], nb, -1), e.flip(0))  # (2, b, C) W_i^T e_other
    per = torch.einsum("bkc,bchw,bkhw,bk->bkhw", v, feats, maps, q) / (h * wd)  # (2, b, h, w)
    terms, rem = _terms(per.sum(1), e, c)  # (2, h, w), (2,)
    by_branch = per / float(e[0].norm() * e[1].norm())  # (2, b, h, w)
    emb = out.embedding.double()
    cos = float(torch.nn.functional.cosine_similarity(emb[:1], emb[1:], dim=1))
    return _result(terms, rem, cos, x.shape[-1], f"CQA-Face: sum_i S_i M_i X / hw -> fc -> features (b={nb})",
                   by_branch)


def _result(terms: torch.Tensor, rem: torch.Tensor, cos: float, size: int, path: str,
            branches: torch.Tensor | None = None) -> SimilarityMap:
    up = upsample(terms.float()[:, None], size)[:, 0]  # (2, S, S)
    return SimilarityMap(terms.numpy(), rem.numpy(), cos, up.numpy().astype(np.float32), path,
                         None if branches is None else branches.numpy())


def similarity_map_chips(recognizer: Recognizer, chips: np.ndarray, head: LinearHead | None = None) -> SimilarityMap:
    """:func:`similarity_map` of a white-box recognizer on its uint8 chips (2, S, S, 3) [a, b].

    ``maps`` is what the registry's ``PairMaps`` wants: (2, S, S), a vs b then b vs a.
    """
    if recognizer.module is None or recognizer.layer is None:
        raise ExplainError(f"{recognizer.name} is black-box: a similarity map needs its torch module and a "
                           "named spatial layer")
    chips = np.asarray(chips)
    if chips.ndim != 4 or len(chips) != 2:
        raise ExplainError(f"a similarity map takes chips (2, S, S, 3) [a, b], got {chips.shape}")
    x = recognizer.preprocess.to_tensor(chips, recognizer.device)  # (2, 3, S, S)
    return similarity_map(recognizer.module, recognizer.layer, x[:1], x[1:], head)


def head_problem(recognizer: Recognizer) -> str:
    """'' when :func:`similarity_map_chips` can decompose ``recognizer``, else the one-line reason.

    One forward of two grey chips (the registry's ``why_not`` for this method).
    """
    s = recognizer.preprocess.size
    try:
        similarity_map_chips(recognizer, np.full((2, s, s, 3), 128, np.uint8))
    except ExplainError as exc:
        return str(exc)
    return ""
