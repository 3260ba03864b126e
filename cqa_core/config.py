"""Frozen configuration dataclasses: every ablation switch of the paper lives here.

The presets in ``configs/`` build these; ``cqa train --set key=value`` overrides fields.
Paper facts (Implementation Details): b = 4, sigma = 0.01, t = 0.2, lambda = 0.5, CosFace,
FC-512 before the classifier, ResNet-100 stem for comparisons.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any, Literal

STEMS = ("r18", "r34", "r50", "r100", "light")
DIVERSITY = ("cal", "ld", "none")


@dataclass(frozen=True)
class ModelConfig:
    """Architecture of CQA-Face.

    Attributes:
        stem: backbone producing the feature map X: ``r18|r34|r50|r100`` (insightface iResNet)
            or ``light`` (a < 3M-parameter stem for CPU training and the dashboard).
        branches: number of local branches b (paper: 4; ablation 2/4/8/16).
        embedding_size: width of the FC layer after the concatenated branch features (512).
        lanet_reduction: LANet's channel reduction r (first 1x1 conv maps C -> C // r).
        qan: Quality-Aware Network on/off. Off = plain concatenation, quality = ones,
            relation = zeros.
        qan_reduction: W^phi / W^varphi project C -> C // qan_reduction channels (the paper's
            "dimension reduction ratio r" of Eq. 4; it gives no value, 8 keeps A's entries O(1)).
        qan_hidden: width of mu, nu (Eq. 5) and of theta's hidden layer. The paper gives no
            widths; 128 is enough for b <= 16 relation vectors and costs ~0.1M parameters.
        dropout: dropout on the concatenated branch features before the FC (insightface's
            default 0).
    """

    stem: str = "r100"
    branches: int = 4
    embedding_size: int = 512
    lanet_reduction: int = 16
    qan: bool = True
    qan_reduction: int = 8
    qan_hidden: int = 128
    dropout: float = 0.0

    def __post_init__(self) -> None:
        if self.stem not in STEMS:
            raise ValueError(f"unknown stem {self.stem!r}; choose one of {', '.join(STEMS)}")
        if self.branches < 1:
            raise ValueError(f"branches must be >= 1, got {self.branches}")


@dataclass(frozen=True)
class LossConfig:
    """Training objective, Eq. 8-9.

    Attributes:
        head: margin head, ``cosface`` (paper, Eq. 8) or ``arcface``.
        scale: s of Eq. 8. The paper does not state it; CosFace's own paper uses s = 64.
        margin: m of Eq. 8. CosFace's paper reports m = 0.35 as its best setting; ArcFace uses 0.5.
        diversity: ``cal`` (Eq. 2), ``ld`` (Eq. 3, the L_D baseline) or ``none``.
        lam: lambda of Eq. 9 (0.5).
        sigma: sigma of Eq. 2 (0.01).
        t: margin t of Eq. 2 and Eq. 3 (0.2).
        cal_reduction: how (M_i - M_j)^2 becomes a scalar in Eq. 2; see ``cqa_core.losses``.
    """

    head: Literal["cosface", "arcface"] = "cosface"
    scale: float = 64.0
    margin: float = 0.35
    diversity: Literal["cal", "ld", "none"] = "cal"
    lam: float = 0.5
    sigma: float = 0.01
    t: float = 0.2
    cal_reduction: Literal["pixel", "map"] = "pixel"

    def __post_init__(self) -> None:
        if self.diversity not in DIVERSITY:
            raise ValueError(f"unknown diversity loss {self.diversity!r}; choose cal, ld or none")
        if self.head not in ("cosface", "arcface"):
            raise ValueError(f"unknown head {self.head!r}; choose cosface or arcface")


@dataclass(frozen=True)
class DataConfig:
    """Where training faces come from (filled in by the data and training issues)."""

    root: str = "../shared/data/celeba299"
    format: Literal["folder", "recordio"] = "folder"
    image_size: int = 112
    num_workers: int = 2
    val_pairs: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def to_dict(cfg: Any) -> dict[str, Any]:
    """A config dataclass -> plain JSON-able dict."""
    return dataclasses.asdict(cfg)


def model_config_from_dict(d: dict[str, Any]) -> ModelConfig:
    """Build a ModelConfig from a dict, with a clear error on unknown keys."""
    known = {f.name for f in dataclasses.fields(ModelConfig)}
    unknown = set(d) - known
    if unknown:
        raise ValueError(f"unknown ModelConfig keys: {sorted(unknown)}")
    return ModelConfig(**d)


def dumps(cfg: Any) -> str:
    return json.dumps(to_dict(cfg), sort_keys=True)
