"""One interface for every face recognizer the workbench explains.

A :class:`Recognizer` carries what every explainer needs:

* its own preprocessing (:class:`Preprocess`): the input side, the alignment template its chip is
  cut to, the normalisation and the channel order;
* ``embed(chips) -> (N, D)`` on uint8 RGB chips cut for it (:func:`cut_chip`);
* optional capabilities, declared, never guessed by the caller:

  - **white-box**: ``module``, a differentiable ``torch.nn.Module`` taking the preprocessed float
    batch (N, 3, S, S) to the embedding (N, D), and ``layer``, the dotted name of one of its
    submodules whose output is a spatial feature map (N, C, h, w): Grad-CAM's target;
  - **a readout** beyond the embedding (:class:`Readout`): CQA-Face's branch attention, QAN quality
    and relation matrix, read in the same forward pass (``recognizers.cqa.BranchReadout``).

A black-box recognizer has only ``embed``; perturbation methods (occlusion, RISE) explain it.
:meth:`Recognizer.read` is the one call the analysis makes for every recognizer: the embeddings,
plus the readout's output where there is one.

Chips: every photo is aligned once (MTCNN 5 landmarks, ``cqa_core.data.align``); a recognizer
whose template is the ArcFace one at 112 x 112 takes that aligned face as it is, any other cuts
its own chip from the same landmarks (:func:`cut_chip`), so maps computed on its chip go back onto
the photo through its own affine.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from torch import nn

from cqa_core.checkpoint import file_digest
from cqa_core.data.align import (
    LANDMARK_WEIGHTS,
    AlignedFace,
    invert_affine,
    transform_points,
    umeyama,
    warp,
)
from cqa_core.data.template import ARCFACE_TEMPLATE, DLIB_TEMPLATE, SIZE

TEMPLATES: dict[str, np.ndarray] = {"arcface": ARCFACE_TEMPLATE / SIZE, "dlib": DLIB_TEMPLATE}
"""Alignment templates: 5 points (eyes, nose tip, mouth corners) as fractions of the chip side
(``cqa_core.data.template``; a fixed table, filled here and never changed on import)."""


class RecognizerError(ValueError):
    """A model file or option the workbench cannot use; the message says why, in one line."""


class Readout(Protocol):
    """What a recognizer shows beyond its embedding, read in the same forward pass.

    ``read`` takes the preprocessed batch (N, 3, S, S) and returns the model's output for it, a record
    with ``embedding`` (N, D) and the readout's own fields (CQA-Face: ``CQAOutput``'s attention maps,
    quality and relation, which ``cqa_core.explain.branches`` turns into what the views show).
    """

    count: int  # branches
    model: nn.Module  # the model whose head the branch decomposition folds

    def read(self, x: torch.Tensor) -> Any: ...


@dataclass(frozen=True)
class Preprocess:
    """How a recognizer wants its input.

    Attributes:
        size: side of the square chip in pixels.
        template: key of :data:`TEMPLATES`: where the 5 landmarks sit on the chip.
        mean: per-channel value subtracted from the 0-255 pixels (in the model's channel order).
        std: per-channel divisor after the subtraction.
        bgr: the model reads BGR (channels reversed) instead of RGB.
    """

    size: int = SIZE
    template: str = "arcface"
    mean: tuple[float, float, float] = (127.5, 127.5, 127.5)
    std: tuple[float, float, float] = (127.5, 127.5, 127.5)
    bgr: bool = False

    def points(self) -> np.ndarray:
        """(5, 2) template landmarks in chip pixels."""
        if self.template not in TEMPLATES:
            raise RecognizerError(f"unknown alignment template {self.template!r}; known: {', '.join(TEMPLATES)}")
        return TEMPLATES[self.template] * self.size  # (5, 2)

    @property
    def is_arcface112(self) -> bool:
        """True when the chip is exactly the project's aligned face (ArcFace template, 112 x 112)."""
        return self.template == "arcface" and self.size == SIZE

    def to_tensor(self, chips: np.ndarray | torch.Tensor, device: torch.device | str = "cpu") -> torch.Tensor:
        """uint8 / float 0-255 RGB chips (N, S, S, 3) -> the model's float input (N, 3, S, S)."""
        x = torch.as_tensor(np.asarray(chips) if not isinstance(chips, torch.Tensor) else chips)
        if x.dim() == 3:
            x = x[None]  # (1, S, S, 3)
        if x.dim() != 4 or x.shape[-1] != 3:
            raise RecognizerError(f"expected (N, {self.size}, {self.size}, 3) RGB chips, got {tuple(x.shape)}")
        x = x.to(device).permute(0, 3, 1, 2).float()  # (N, 3, S, S) RGB 0-255
        if self.bgr:
            x = x.flip(1)  # (N, 3, S, S) BGR
        mean = torch.tensor(self.mean, device=x.device).view(1, 3, 1, 1)
        std = torch.tensor(self.std, device=x.device).view(1, 3, 1, 1)
        return (x - mean) / std  # (N, 3, S, S)


def face_landmarks(face: AlignedFace) -> np.ndarray:
    """(5, 2) landmarks of an aligned face in photo coordinates.

    Detected points when MTCNN found the face; otherwise (centre fallback, an input that was already
    a 112 x 112 crop) the photo points its affine takes onto the ArcFace template.
    """
    if face.landmarks is not None:
        return np.asarray(face.landmarks, np.float64)  # (5, 2)
    return transform_points(invert_affine(face.affine), ARCFACE_TEMPLATE)  # (5, 2)


def cut_chip(photo: np.ndarray, face: AlignedFace, pre: Preprocess) -> tuple[np.ndarray, np.ndarray]:
    """A recognizer's chip of a photo: (chip (S, S, 3) uint8, affine photo -> chip (2, 3)).

    The ArcFace template at 112 x 112 is the aligned face itself; any other template is fitted to the
    same landmarks with the same eye weighting.
    """
    if pre.is_arcface112:
        return face.image, np.asarray(face.affine, np.float64)
    m = umeyama(face_landmarks(face), pre.points(), LANDMARK_WEIGHTS)  # (2, 3)
    return warp(photo, m, pre.size), m


@dataclass
class Recognizer:
    """A face recognizer and what it can show.

    Attributes:
        name: what the dashboard and the CLI call it ("default CQA-Face", "r50.onnx", "dlib").
        kind: "cqa-face" | "arcface" | "onnx" | "dlib" | "torch".
        preprocess: its input convention.
        embed_fn: uint8 RGB chips (N, S, S, 3) -> embeddings (N, D) float32; None derives it from ``module``.
        module: white-box: preprocessed (N, 3, S, S) float -> (N, D) embedding, differentiable.
        layer: white-box: dotted name of ``module``'s spatial feature layer (Grad-CAM target).
        readout: what it shows beyond the embedding (:class:`Readout`; CQA-Face's branches), or None.
        source: the file it came from (None for in-memory models).
        digest: identity of its weights, for cache keys (default: the sha1 of ``source``, else of the
            module's tensors).
        batch_size: chips per ``embed`` call.
        chip_ms: about how many milliseconds one chip's embedding takes on a CPU; the perturbation
            methods size their budgets by it (``explain.methods.default_budget``).
        note: one line the dashboard and the CLI show beside its name (why it is black-box, ...).
    """

    name: str
    kind: str
    preprocess: Preprocess = field(default_factory=Preprocess)
    embed_fn: Callable[[np.ndarray], np.ndarray] | None = None
    module: nn.Module | None = None
    layer: str | None = None
    readout: Readout | None = None
    source: str | None = None
    digest: str = ""
    batch_size: int = 64
    chip_ms: float = 60.0
    note: str = ""

    def __post_init__(self) -> None:
        if self.embed_fn is None and self.module is None:
            raise RecognizerError(f"{self.name}: a recognizer needs an embedding function or a torch module")
        if self.module is not None and self.layer is not None:
            find_layer(self.module, self.layer)  # fails now, with the known names, if it is wrong
        if not self.digest:
            self.digest = (file_digest(self.source) if self.source and Path(self.source).is_file()
                           else module_digest(self.module) if self.module is not None else f"{self.kind}:{self.name}")

    @property
    def whitebox(self) -> bool:
        """Gradients reach the input and a spatial layer is named."""
        return self.module is not None and self.layer is not None

    def cache_key(self) -> str:
        """Identity of the weights as they are now: ``digest``, except for an in-memory module (no
        ``source``), whose key follows in-place updates (:func:`weights_key`: training changes it)."""
        return weights_key(self.module) if self.source is None and self.module is not None else self.digest

    @property
    def device(self) -> torch.device:
        if self.module is not None:
            for p in self.module.parameters():
                return p.device
        return torch.device("cpu")

    def embed(self, chips: np.ndarray) -> np.ndarray:
        """Embeddings (N, D) float32 of uint8 RGB chips (N, S, S, 3), in batches of ``batch_size``."""
        chips = np.asarray(chips)
        if chips.ndim == 3:
            chips = chips[None]  # (1, S, S, 3)
        s = self.preprocess.size
        if chips.ndim != 4 or chips.shape[1:] != (s, s, 3):
            raise RecognizerError(f"{self.name} takes ({s}, {s}, 3) chips, got {chips.shape[1:]}")
        out = []
        for i in range(0, len(chips), self.batch_size):
            part = chips[i:i + self.batch_size]
            if self.embed_fn is not None:
                out.append(np.asarray(self.embed_fn(part), np.float32))
            else:
                with torch.no_grad():
                    x = self.preprocess.to_tensor(part, self.device)  # (n, 3, S, S)
                    out.append(self.module(x).detach().float().cpu().numpy())  # (n, D)
        return np.concatenate(out) if out else np.zeros((0, 0), np.float32)

    def read(self, chips: np.ndarray) -> tuple[np.ndarray, Any]:
        """(embeddings (N, D) float32, the readout's output for the batch or None), one forward for both."""
        if self.readout is None:
            return self.embed(chips), None
        with torch.no_grad():
            out = self.readout.read(self.preprocess.to_tensor(chips, self.device))  # .embedding (N, D)
        return out.embedding.detach().float().cpu().numpy(), out

    def capabilities(self) -> dict[str, bool]:
        return {"embeddings": True, "gradients": self.whitebox, "branches": self.readout is not None}

    def describe(self) -> str:
        """One line: kind, input and what can be explained."""
        what = "branches + QAN" if self.readout is not None else "white-box" if self.whitebox else "black-box"
        layer = f", layer {self.layer}" if self.whitebox and self.readout is None else ""
        note = f"; {self.note}" if self.note else ""
        return f"{self.kind}, {self.preprocess.size}x{self.preprocess.size} {self.preprocess.template} chip, {what}{layer}{note}"


def find_layer(module: nn.Module, name: str) -> nn.Module:
    """The submodule called ``name`` (dotted), or a RecognizerError listing the spatial candidates."""
    found = dict(module.named_modules())
    if name not in found:
        near = [n for n in found if n and n.split(".")[-1] == name.split(".")[-1]][:5]
        hint = f"; did you mean {', '.join(near)}" if near else ""
        raise RecognizerError(f"layer {name!r} is not a submodule of the model{hint}")
    return found[name]


def weights_key(module: nn.Module) -> str:
    """Identity of a module's current weights: which tensor objects + their in-place update counters
    (training changes it; a wrapper around the same model gets the same key).

    Cheap, and valid only in this process: a cache key, never a file name."""
    state = module.state_dict(keep_vars=True).values()
    return f"live:{hash(tuple(id(t) for t in state)):x}:{sum(t._version for t in state)}"


def module_digest(module: nn.Module) -> str:
    """sha1 of a module's parameters and buffers (names, shapes, values): identity for caches."""
    h = hashlib.sha1()
    for k, v in module.state_dict().items():
        h.update(k.encode())
        t = v.detach().cpu().contiguous()
        h.update(str(tuple(t.shape)).encode())
        h.update(t.view(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()[:16]


def spatial_layers(module: nn.Module, preprocess: Preprocess) -> list[tuple[str, tuple[int, ...]]]:
    """(name, output shape) of every submodule whose output is a (1, C, h, w) map, in execution order.

    Found by one forward pass of a grey chip with temporary forward hooks on the user's module
    (removed before returning): the only way to see the shapes inside an arbitrary module.
    """
    seen: list[tuple[str, tuple[int, ...]]] = []
    handles = []
    for name, sub in module.named_modules():
        if not name:
            continue

        def record(_m: nn.Module, _inp: Any, out: Any, name: str = name) -> None:
            if isinstance(out, torch.Tensor) and out.dim() == 4:
                seen.append((name, tuple(out.shape)))

        handles.append(sub.register_forward_hook(record))
    modes = [(m, m.training) for m in module.modules()]
    try:
        grey = np.full((1, preprocess.size, preprocess.size, 3), 128, np.uint8)
        with torch.no_grad():
            module.eval()(preprocess.to_tensor(grey, next(iter(module.parameters()), torch.empty(0)).device))
    finally:
        for h in handles:
            h.remove()
        for m, training in modes:  # each submodule's own mode back
            m.training = training
    return seen


def feature_layer(module: nn.Module, preprocess: Preprocess, min_side: int = 7) -> str:
    """The Grad-CAM layer of a module: the last of the widest maps at its last resolution of >= ``min_side``.

    That is the final feature map of a plain CNN (an iResNet's ``bn2``), and it passes over narrow
    maps a model computes from it (CQA-Face's LANet attention maps: 12-, 1- and 4-channel 7 x 7 maps
    after its 192-channel stem output).

    Raises:
        RecognizerError: no submodule outputs a map of at least ``min_side`` x ``min_side``.
    """
    layers = [(n, s) for n, s in spatial_layers(module, preprocess) if min(s[2], s[3]) >= min_side]
    if not layers:
        raise RecognizerError(f"no layer of the model outputs a spatial map of at least {min_side} x {min_side}; "
                              "name one (layer= in Python, --layer on the command line), or explain it as a black-box")
    last = layers[-1][1][2:]  # (h, w) of the network's last map
    same = [(n, s[1]) for n, s in layers if s[2:] == last]
    widest = max(c for _, c in same)
    return [n for n, c in same if c == widest][-1]
