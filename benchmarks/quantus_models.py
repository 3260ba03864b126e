"""What Quantus treats as the model and the explainer, for ``benchmarks/explanation_checks.py``.

:class:`ScoreModel` turns a recognizer and a partner face into the one-output network Quantus' metrics
take (face a's pixels -> cos(e(a), e(b))); :class:`BlockScoreModel` lets MPRT walk groups of layers;
:func:`quantus_explainer` is the ``explain_func`` that makes a registry method's maps at this
benchmark's budget (:func:`budget`).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from cqa_core.explain import methods as registry
from cqa_core.explain.methods import Context
from cqa_core.recognizers.base import Recognizer
from cqa_core.recognizers.cqa import Embedding, from_cqa

WHITE_BOX_BUDGET = Context(grid=7, masks=100)
BLACK_BOX_BUDGET = Context(grid=5, masks=50)  # dlib embeds a chip in ~75 ms, 35x CQA-Face's light stem


def budget(rec: Recognizer) -> Context:
    return WHITE_BOX_BUDGET if rec.whitebox else BLACK_BOX_BUDGET


def face_map(rec: Recognizer, a: np.ndarray, b: np.ndarray, method: str) -> np.ndarray:
    """(S, S) map of chip a against chip b by the registry's method, at this benchmark's budget."""
    return np.asarray(registry.get(method).face_map(rec, a, b, budget(rec)), np.float32)


class ScoreModel(nn.Module):
    """What Quantus treats as the model: float pixels (N, 3, S, S) 0-255 of face a -> (N, 1) cos(e(a), e(b)).

    e(b) is recomputed by the same module on every call, so a randomised copy changes both faces.
    """

    def __init__(self, rec: Recognizer, chip_b: np.ndarray) -> None:
        super().__init__()
        self.module = rec.module  # None for a black-box recognizer (then nothing can be randomised)
        self.name, self.kind, self.preprocess, self.layer = rec.name, rec.kind, rec.preprocess, rec.layer
        self.embed_fn = None if rec.module is not None else rec.embed
        self.chip_b = chip_b  # (S, S, 3) uint8

    def embed(self, chips: np.ndarray) -> torch.Tensor:
        if self.module is None:
            return torch.from_numpy(np.asarray(self.embed_fn(chips), np.float32))  # (N, D)
        return self.module(self.preprocess.to_tensor(chips, next(self.module.parameters()).device)).float().cpu()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        chips = to_chips(x)  # (N, S, S, 3) uint8
        e = self.embed(np.concatenate([chips, self.chip_b[None]]))  # (N + 1, D)
        return torch.nn.functional.cosine_similarity(e[:-1], e[-1:], dim=1)[:, None]  # (N, 1)

    def recognizer(self) -> Recognizer:
        """The (possibly randomised) network as a Recognizer the methods take."""
        if isinstance(self.module, Embedding):
            return from_cqa(self.module.model, name=self.name)
        return Recognizer(name=self.name, kind=self.kind, preprocess=self.preprocess, module=self.module,
                          embed_fn=self.embed_fn, layer=self.layer, digest=f"checks:{id(self.module)}")


class Block(nn.Module):
    """Consecutive layers of a network that Quantus sees as one layer: its ``reset_parameters`` re-initialises
    them all (Quantus' MPRT walks the modules that have a ``reset_parameters``)."""

    def __init__(self, layers: list[nn.Module]) -> None:
        super().__init__()
        self.layers = layers  # a plain list: not registered, so Quantus does not walk them one by one

    def reset_parameters(self) -> None:
        for layer in self.layers:
            layer.reset_parameters()


class BlockScoreModel(ScoreModel):
    """A :class:`ScoreModel` whose randomisation walk has ``blocks`` steps: the network's layers (every module
    with parameters to reset, as Quantus picks them) in that many consecutive groups, the top group first."""

    def __init__(self, rec: Recognizer, chip_b: np.ndarray, blocks: int) -> None:
        super().__init__(rec, chip_b)
        net = self._modules.pop("module")  # hidden from Quantus' module walk, still used by embed()
        object.__setattr__(self, "module", net.eval())
        layers = [m for _, m in net.named_modules() if hasattr(m, "reset_parameters")]
        for i, group in enumerate(np.array_split(np.arange(len(layers)), min(blocks, len(layers)))):
            self.add_module(f"block{i}", Block([layers[j] for j in group]))


def to_chips(x: torch.Tensor | np.ndarray) -> np.ndarray:
    """Float pixels (N, 3, S, S) -> uint8 chips (N, S, S, 3) (rounded, clipped)."""
    return np.clip(np.round(np.asarray(x, np.float64)), 0, 255).astype(np.uint8).transpose(0, 2, 3, 1)


def pixels(chips: np.ndarray) -> np.ndarray:
    return np.asarray(chips, np.float32).transpose(0, 3, 1, 2)  # (N, 3, S, S)


def quantus_explainer(method: str) -> Callable[..., np.ndarray]:
    """Quantus' ``explain_func(model, inputs, targets)``: maps (N, 1, S, S) of a ScoreModel's faces."""

    def explain(model: ScoreModel, inputs: np.ndarray, targets: np.ndarray, **_: object) -> np.ndarray:
        rec = model.recognizer()
        return np.stack([face_map(rec, c, model.chip_b, method)[None] for c in to_chips(inputs)])

    return explain
