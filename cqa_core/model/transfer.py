"""Start CQA-Face from another face recogniser: an insightface iResNet as the stem, stem freezing.

insightface's ``arcface_torch`` saves its backbone as ``backbone.pth``: a plain state dict of
``iresnet.py``'s ``IResNet``, whose modules are

    conv1, bn1, prelu                    3x3 stem conv (stride 1), BN, PReLU
    layer1 .. layer4                     IBasicBlock stages of widths 64/128/256/512, stride 2
                                         each (block 0 carries downsample.0 conv1x1 + .1 BN)
    bn2                                  BN on the 512 x 7 x 7 map
    dropout, fc, features                flatten -> FC-512 -> BN1d (the embedding head)

:class:`~cqa_core.model.backbones.StemCNN` names the same modules ``conv1, bn1, prelu,
stages.0 .. stages.3, bn2`` with identical block internals, so the conv body maps one to one
(``layerN.`` -> ``stages.{N-1}.``). insightface's ``fc`` / ``features`` take the flattened map
to the embedding; CQA-Face replaces that head with its LANet branches, QAN and its own FC-512,
so they are reported as unused and the CQA head starts from a seeded initialisation.
A ``module.`` prefix (a state dict saved from DDP) is dropped.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors.torch import load_file
from torch import nn

from cqa_core.config import ModelConfig
from cqa_core.model.backbones import IRESNET_DEPTHS
from cqa_core.model.cqa_face import CQAFace, create_model

HEAD_PREFIXES = ("fc.", "features.")  # insightface's flatten -> FC-512 -> BN head
WRAPPERS = ("state_dict_backbone", "state_dict", "model")  # dict keys a training checkpoint may nest under


@dataclass
class ImportReport:
    """How a source state dict maps onto a stem.

    Attributes:
        mapped: (source key, stem key) for every tensor that is loaded.
        unused: source keys of the embedding head (fc., features.), not loaded.
        unexpected: other source keys with no stem counterpart (e.g. an r100 file for an r50 stem).
        missing: stem keys the source does not provide.
        mismatched: (stem key, source shape, stem shape) where both exist but shapes differ.
    """

    mapped: list[tuple[str, str]] = field(default_factory=list)
    unused: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    mismatched: list[tuple[str, tuple[int, ...], tuple[int, ...]]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Every stem tensor has a same-shaped source tensor and nothing else is left over."""
        return not (self.unexpected or self.missing or self.mismatched)

    def problems(self, limit: int = 5) -> str:
        """One line naming what does not fit (empty when :attr:`ok`)."""
        parts = []
        if self.mismatched:
            shown = ", ".join(f"{k} {tuple(a)} vs stem {tuple(b)}" for k, a, b in self.mismatched[:limit])
            parts.append(f"{len(self.mismatched)} shape mismatch(es): {shown}")
        if self.missing:
            parts.append(f"{len(self.missing)} stem tensor(s) missing from the file: {', '.join(self.missing[:limit])}")
        if self.unexpected:
            parts.append(f"{len(self.unexpected)} unexpected tensor(s): {', '.join(self.unexpected[:limit])}")
        return "; ".join(parts)


def map_insightface_key(key: str) -> str | None:
    """insightface iResNet key -> StemCNN key; None for the embedding head.

    ``layer3.7.conv2.weight`` -> ``stages.2.7.conv2.weight``; ``module.bn1.bias`` -> ``bn1.bias``;
    ``fc.weight`` -> None.
    """
    key = key.removeprefix("module.")
    if key.startswith(HEAD_PREFIXES):
        return None
    head, _, rest = key.partition(".")
    if head.startswith("layer") and head[5:].isdigit() and rest:
        return f"stages.{int(head[5:]) - 1}.{rest}"
    return key


def plan_import(source: dict[str, torch.Tensor], stem: nn.Module) -> ImportReport:
    """Match a source state dict against ``stem.state_dict()`` by name and shape (no copying).

    Works on meta tensors too, so an r100 layout can be checked without allocating it.
    """
    target = stem.state_dict()
    report = ImportReport()
    seen = set()
    for key, value in source.items():
        name = map_insightface_key(key)
        if name is None:
            report.unused.append(key)
        elif name not in target:
            report.unexpected.append(key)
        elif tuple(value.shape) != tuple(target[name].shape):
            report.mismatched.append((name, tuple(value.shape), tuple(target[name].shape)))
            seen.add(name)
        else:
            report.mapped.append((key, name))
            seen.add(name)
    report.missing = [k for k in target if k not in seen]
    return report


def iresnet_depths(source: dict[str, torch.Tensor]) -> tuple[int, ...] | None:
    """Blocks per stage of an insightface iResNet state dict: (2, 2, 2, 2) for r18; None without layerN keys."""
    blocks: dict[int, set[int]] = {}
    for key in source:
        head, _, rest = key.removeprefix("module.").partition(".")
        index = rest.partition(".")[0]
        if head.startswith("layer") and head[5:].isdigit() and index.isdigit():
            blocks.setdefault(int(head[5:]), set()).add(int(index))
    return tuple(len(blocks.get(i, ())) for i in range(1, max(blocks) + 1)) if blocks else None


def depth_mismatch(source: dict[str, torch.Tensor], stem: str) -> str | None:
    """One phrase when ``source`` is an iResNet of another depth than ``stem``, else None."""
    have, want = iresnet_depths(source), IRESNET_DEPTHS.get(stem)
    if have is None or want is None or have == want:
        return None
    name = next((n for n, d in IRESNET_DEPTHS.items() if d == have), None)
    blocks = "/".join(map(str, have))
    if name is None:
        return f"the file is an iResNet with {blocks} blocks per stage, which no stem has"
    return (f"the file is an iResNet {name} ({blocks} blocks per stage), a {stem} stem has "
            f"{'/'.join(map(str, want))}; import it with --stem {name}")


def _short_reason(exc: BaseException) -> str:
    """The telling line of a torch.load failure (its weights-only messages run to a paragraph)."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    for ln in lines:
        if "GLOBAL" in ln or "Unsupported" in ln:  # "Trying to load unsupported GLOBAL posix.system ..."
            return ln[:200]
    return (lines[0] if lines else type(exc).__name__)[:200]


def read_insightface_state(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Load an arcface_torch ``backbone.pth`` with ``torch.load(weights_only=True)`` (no code
    runs), or a ``.safetensors`` file with the same keys.

    Raises:
        FileNotFoundError: no such file.
        ValueError: the file holds no tensor state dict (refused pickle, truncated, not torch).
    """
    p = Path(path).expanduser()
    if not p.is_file():
        raise FileNotFoundError(f"backbone file not found: {p}")
    try:
        if p.suffix == ".safetensors":
            obj = load_file(str(p), device="cpu")
        else:
            with warnings.catch_warnings():  # e.g. "Detected pickle protocol 4": noise next to the error
                warnings.simplefilter("ignore")
                obj = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:  # UnpicklingError, EOFError, RuntimeError, SafetensorError, ...: all "not weights"
        raise ValueError(f"{p}: not a tensor state dict that loads with torch.load(weights_only=True) "
                         f"({type(exc).__name__}: {_short_reason(exc)})") from exc
    for key in WRAPPERS:
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
            break
    if not isinstance(obj, dict) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ValueError(f"{p}: expected a state dict of tensors (an arcface_torch backbone.pth)")
    return obj


def import_insightface(source: dict[str, torch.Tensor], config: ModelConfig, seed: int = 0
                       ) -> tuple[CQAFace, ImportReport]:
    """A CQA-Face model whose stem holds ``source``'s conv body; the rest is seeded fresh.

    Args:
        source: an insightface iResNet state dict (see the module docstring).
        config: the CQA-Face to build; ``config.stem`` must be the iResNet depth of ``source``.
        seed: torch seed for the CQA head's initialisation.

    Returns:
        (model in eval mode, report).

    Raises:
        ValueError: the source does not fit the stem (the message lists the problems).
    """
    torch.manual_seed(seed)
    model = create_model(config)
    report = plan_import(source, model.stem)
    if not report.ok:
        depth = depth_mismatch(source, config.stem)
        detail = report.problems() if depth is None else f"{depth} ({report.problems(limit=1)})"
        raise ValueError(f"insightface weights do not fit a {config.stem} stem: {detail}")
    state = {name: source[key] for key, name in report.mapped}
    model.stem.load_state_dict(state, strict=True)  # copy_ casts fp16 files to the stem's fp32
    return model.eval(), report


def _stay_in_eval(module: nn.Module, args: tuple) -> None:
    module.train(False)  # undo a model.train() that reached the frozen stem


def freeze_stem(model: CQAFace) -> CQAFace:
    """Fine-tune only the CQA head: stem parameters get no gradient and its BatchNorm statistics
    stay fixed (the stem is kept in eval mode, also after any later ``model.train()``).

    Returns:
        ``model`` (modified in place).
    """
    for p in model.stem.parameters():
        p.requires_grad_(False)
    model.stem.eval()
    if not getattr(model.stem, "_cqa_frozen", False):
        model.stem.register_forward_pre_hook(_stay_in_eval)
        model.stem._cqa_frozen = True
    return model
