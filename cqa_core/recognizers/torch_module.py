"""A torch module plus a layer name, from Python, as a white-box recognizer.

The module maps the preprocessed float batch (N, 3, S, S) to embeddings (N, D). A module that returns
several things (a tuple, a NamedTuple such as CQA-Face's ``CQAOutput``, a dict) is wrapped by
:class:`SelectOutput`, which returns the one named by ``output=``; its submodules then sit under
``model.`` (a layer given for the user's module is prefixed automatically).

Without a layer name, :func:`~cqa_core.recognizers.base.feature_layer` picks the Grad-CAM target: among the maps at the network's
last resolution of at least 7 x 7, the last of the widest (most channels). That is the final feature
map of a plain CNN (the same layer as "the last spatial map"), and it skips the narrow attention maps a
model may compute from it (CQA-Face's LANets: 12-, 1- and 4-channel 7 x 7 maps after its 192-channel
stem output).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from cqa_core.recognizers.base import (
    Preprocess,
    Recognizer,
    RecognizerError,
    feature_layer,
    find_layer,
)

WRAPPED = "model"  # attribute name of the user's module inside SelectOutput
ARCFACE_112 = Preprocess()  # insightface's convention: RGB, (x - 127.5) / 127.5, ArcFace template, 112 x 112


def pick_output(out: Any, output: str | int) -> Any:
    """Field ``output`` of a module's result: dict key, NamedTuple field name, or tuple / list index."""
    if isinstance(out, dict):
        return out[output]
    if isinstance(output, str):
        return getattr(out, output)
    return out[output]


class SelectOutput(nn.Module):
    """A module whose result is a tuple / NamedTuple / dict, reduced to its embedding field.

    Args:
        model: the wrapped module (available as ``self.model``; its layers are ``model.<name>``).
        output: dict key, NamedTuple field name or index of the embedding.
    """

    def __init__(self, model: nn.Module, output: str | int) -> None:
        super().__init__()
        self.model = model
        self.output = output

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return pick_output(self.model(x), self.output)  # (N, D)


def _fields(out: Any) -> str:
    """The names a user can pass as ``output=`` for a result, for an error message."""
    if isinstance(out, dict):
        return ", ".join(repr(k) for k in out)
    if hasattr(out, "_fields"):
        return ", ".join(repr(f) for f in out._fields)
    return ", ".join(str(i) for i in range(len(out)))


def _probe(module: nn.Module, preprocess: Preprocess) -> Any:
    """The module's result for one grey chip (eval mode, no gradient)."""
    grey = np.full((1, preprocess.size, preprocess.size, 3), 128, np.uint8)  # (1, S, S, 3)
    device = next(iter(module.parameters()), torch.empty(0)).device
    with torch.no_grad():
        return module.eval()(preprocess.to_tensor(grey, device))


def embedding_module(module: nn.Module, preprocess: Preprocess, output: str | int | None = None) -> nn.Module:
    """``module`` itself when it returns an (N, D) tensor, else a :class:`SelectOutput` of ``output``.

    Raises:
        RecognizerError: the result is not a tensor and ``output`` is missing or wrong, or the embedding
            is not 2-D.
    """
    out = _probe(module, preprocess)
    if isinstance(out, torch.Tensor):
        if output is not None:
            raise RecognizerError(f"output={output!r} given, but the module returns one tensor; leave output out")
        wrapped, emb = module, out
    elif isinstance(out, (tuple, list, dict)):
        if output is None:
            raise RecognizerError(f"the module returns a {type(out).__name__}, not a tensor: "
                                  f"pass output= one of {_fields(out)} (the embedding)")
        try:
            emb = pick_output(out, output)
        except (KeyError, IndexError, AttributeError, TypeError) as exc:
            raise RecognizerError(f"output={output!r} is not in the module's {type(out).__name__}; "
                                  f"choose one of {_fields(out)}") from exc
        wrapped = SelectOutput(module, output)
    else:
        raise RecognizerError(f"the module returns a {type(out).__name__}; it must return embeddings (N, D)")
    if not isinstance(emb, torch.Tensor) or emb.dim() != 2:
        shape = tuple(emb.shape) if isinstance(emb, torch.Tensor) else type(emb).__name__
        raise RecognizerError(f"the embedding must be an (N, D) tensor, got {shape}; choose another output")
    return wrapped


def resolve_layer(module: nn.Module, layer: str, wrapped: nn.Module) -> str:
    """``layer`` named for the user's ``module`` -> its name in ``wrapped`` (``model.`` prefix when wrapped)."""
    if wrapped is module:
        find_layer(module, layer)
        return layer
    if layer not in dict(module.named_modules()) and layer in dict(wrapped.named_modules()):
        return layer  # already the wrapped name ("model.stem")
    find_layer(module, layer)  # the user's name, or an error listing near names
    return f"{WRAPPED}.{layer}"


def from_module(module: nn.Module, layer: str | None = None, preprocess: Preprocess = ARCFACE_112,
                name: str = "torch module", output: str | int | None = None) -> Recognizer:
    """A white-box recognizer of an in-memory torch module.

    Args:
        module: maps the preprocessed float batch (N, 3, S, S) to embeddings (N, D), or to a tuple /
            NamedTuple / dict holding them (then name the field with ``output``). Put in eval mode.
        layer: dotted name of the Grad-CAM layer in ``module``; found by ``base.feature_layer`` when None.
        preprocess: the module's input convention (size, template, mean / std, channel order).
        name: display name.
        output: field of a tuple / NamedTuple / dict result that holds the embedding.

    Returns:
        A Recognizer of kind "torch" whose ``module`` returns (N, D) and whose ``layer`` is named in it.

    Raises:
        RecognizerError: the result is not an embedding (see :func:`embedding_module`), or the layer is
            unknown / none is spatial.
    """
    wrapped = embedding_module(module, preprocess, output)
    name_in = resolve_layer(module, layer, wrapped) if layer is not None else feature_layer(wrapped, preprocess)
    return Recognizer(name=name, kind="torch", preprocess=preprocess, module=wrapped, layer=name_in)
