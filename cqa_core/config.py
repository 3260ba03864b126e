"""Frozen configuration dataclasses: every ablation switch of the paper lives here.

The presets in ``configs/`` build these; ``cqa train --set key=value`` overrides fields.
Paper facts (Implementation Details): b = 4, sigma = 0.01, t = 0.2, lambda = 0.5, CosFace,
FC-512 before the classifier, ResNet-100 stem for comparisons.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal

STEMS = ("r18", "r34", "r50", "r100", "light", "light_wide")
DIVERSITY = ("cal", "ld", "none")
UNLABELLED = -100
"""Label of a training image with no identity (a teacher-labelled mix): the margin loss ignores it
(``F.cross_entropy``'s ``ignore_index``), distillation, CAL and the quality loss still use it."""


@dataclass(frozen=True)
class ModelConfig:
    """Architecture of CQA-Face.

    Attributes:
        stem: backbone producing the feature map X: ``r18|r34|r50|r100`` (insightface iResNet)
            or ``light`` (a < 3M-parameter stem for CPU training and the dashboard; ``light_wide``
            widens its last stage from 192 to 256 channels).
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
        ld_margin: the hinge margin of Eq. 3 (L_D) on the Euclidean map distance. None (default)
            = t * sqrt(h w): Eq. 3's t = 0.2 read per location (an RMS difference of 0.2). The
            paper reuses CAL's t = 0.2 on the *unnormalised* distance, which over 49 cells
            switches the hinge off once the RMS difference passes 0.2 / 7 = 0.029, so L_D was
            almost inactive; normalised, it pushes until maps differ by 0.2 per location on
            average, close to CAL's per-location switch-off of 0.127 (``cqa_core.losses``).
            A number is used as it is (the paper's literal reading is ``ld_margin=0.2``).
        quality_weight: weight of the QAN quality supervision (our addition, 0 = off = the
            paper). With training degradations on (``AugmentConfig``), branch i's quality target
            is the visible share of its attention, sum(M_i V) / sum(M_i) (M_i detached, V the
            visibility map pooled to h x w), learnt with binary cross-entropy on S_hat_i.
        cal_peak_norm: our addition, off = the paper. Divide each map by its own maximum over
            the h x w cells before Eq. 2, so CAL compares where the maps peak, not how bright they
            are. Over the CPU preset's 56 epochs Eq. 2 on raw maps was met by spreading the
            branches' levels (mean 0.14 to 0.53 at lambda 2) while their top-20% regions
            overlapped more than without CAL (docs/benchmarks.md, "Branch maps").
        cls_weight: weight of L_Cls in Eq. 9 (1 = the paper). Our addition for distillation:
            below 1, the teacher's terms rather than the margin loss over the training identities
            shape the embedding. Measured on the CPU preset (docs/model_card.md, "What was
            tried"): 0.05 gained 2.5 dev points at 392 steps but lost 1.0 View 2 point over the
            full 56 epochs, so every preset keeps 1.
    """

    head: Literal["cosface", "arcface"] = "cosface"
    scale: float = 64.0
    margin: float = 0.35
    diversity: Literal["cal", "ld", "none"] = "cal"
    lam: float = 0.5
    sigma: float = 0.01
    t: float = 0.2
    cal_reduction: Literal["pixel", "map"] = "pixel"
    ld_margin: float | None = None
    quality_weight: float = 0.0
    cal_peak_norm: bool = False
    cls_weight: float = 1.0

    def __post_init__(self) -> None:
        if self.cls_weight < 0:
            raise ValueError(f"loss.cls_weight must be >= 0, got {self.cls_weight}")
        if self.diversity not in DIVERSITY:
            raise ValueError(f"unknown diversity loss {self.diversity!r}; choose cal, ld or none")
        if self.head not in ("cosface", "arcface"):
            raise ValueError(f"unknown head {self.head!r}; choose cosface or arcface")


@dataclass(frozen=True)
class DataConfig:
    """Where training faces come from: an aligned (or, with ``align``, raw) identity folder or RecordIO."""

    root: str = "../shared/data/celeba299"
    format: Literal["folder", "recordio"] = "folder"
    num_workers: int = 2
    align: bool = False  # training: align a raw photo folder first (data.datasets.ensure_aligned)


@dataclass(frozen=True)
class AugmentConfig:
    """On-the-fly training degradations, run in the DataLoader workers (``cqa_core.data.augment``).

    Our addition: the paper trains on clean faces. Each probability is per image and independent;
    all zero (the default, and the r100 paper presets) leaves the data path exactly as before.
    Every degradation also writes a *visibility map* V (112 x 112, in [0, 1]: how much of the
    face's information survives at each pixel), which ``LossConfig.quality_weight`` turns into
    a target for the QAN.

    Attributes:
        p_mask: a MaskTheFace template mask (``degrade.apply_mask``, random kind); V = 1 - alpha.
        p_occluder: a random occluder: a rectangle or a hand-like blob (palm + fingers) filled
            with natural texture (another part of the same photo, re-coloured); V = 0 under it.
        p_blur: Gaussian blur, sigma uniform in ``blur_sigma``; V = 1 / (1 + (sigma / 2.5)^2).
        p_lowres: down- and up-scaling by a factor uniform in ``lowres_factor``; treated as a
            blur of sigma = factor / 2 for V.
        p_jitter: geometric jitter (scale +-``jitter_scale``, shift +-``jitter_shift`` px,
            rotation +-``jitter_degrees``), applied first so masks stay on the face.
        p_color: brightness / contrast / saturation jitter of +-``color_strength``.
        p_gray: grayscale.
    """

    p_mask: float = 0.0
    p_occluder: float = 0.0
    p_blur: float = 0.0
    p_lowres: float = 0.0
    p_jitter: float = 0.0
    p_color: float = 0.0
    p_gray: float = 0.0
    blur_sigma: tuple[float, float] = (1.0, 5.0)
    lowres_factor: tuple[float, float] = (2.0, 6.0)
    jitter_scale: float = 0.08
    jitter_shift: float = 6.0
    jitter_degrees: float = 8.0
    color_strength: float = 0.25

    @property
    def enabled(self) -> bool:
        return any(getattr(self, f.name) > 0 for f in dataclasses.fields(self) if f.name.startswith("p_"))

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            if f.name.startswith("p_") and not 0.0 <= getattr(self, f.name) <= 1.0:
                raise ValueError(f"augment.{f.name} must be a probability in [0, 1], got {getattr(self, f.name)}")


@dataclass(frozen=True)
class DistillConfig:
    """Knowledge distillation from a face-embedding teacher (``cqa_core.training.distill``).

    Off when ``teacher`` is None (the default). Teacher embeddings are computed once per
    training image (``cqa distill-targets``, or on first use) and cached beside the aligned
    crops; they are centred (the teacher's mean over the training set subtracted) and
    L2-normalised, because raw dlib descriptors share a large mean (two random faces: cosine
    ~0.83). The student learns them through a training-only linear projection of its embedding
    (not part of the model) with two losses beside CosFace and CAL:
    ``cos_weight * (1 - cos(W e_s, t))`` and ``rel_weight * mean((C_s - C_t)^2)``, where C are
    the batch's cosine-similarity matrices of the student embeddings and of the targets.

    Attributes:
        teacher: None (off), ``dlib`` (dlib's public ResNet, the ``distill`` extra), a CQA-Face
            ``.safetensors`` checkpoint, or an ``.onnx`` face embedder.
        cos_weight / rel_weight: weights of the two losses.
        batch_size: teacher batch when computing targets.
        mixes: this many teacher-labelled mixes of two training people's faces join the training
            set (``cqa_core.training.mixes``; computed once and cached beside the targets). They
            carry no identity: the margin loss skips them, distillation / CAL / QAN use them.
        mix_seed: which mixes (each is drawn from (mix_seed, index)).
    """

    teacher: str | None = None
    cos_weight: float = 5.0
    rel_weight: float = 10.0
    batch_size: int = 32
    mixes: int = 0
    mix_seed: int = 0

    def __post_init__(self) -> None:
        if self.mixes < 0:
            raise ValueError(f"distill.mixes must be >= 0, got {self.mixes}")
        if self.mixes and self.teacher is None:
            raise ValueError("distill.mixes needs a teacher to label them (distill.teacher)")


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


@dataclass(frozen=True)
class TrainConfig:
    """One training run: model, loss, data, schedule, precision, checkpoints (``cqa_core.training.trainer``).

    Defaults are the paper's (Implementation Details): global batch 256, SGD lr 0.03 with
    momentum 0.9 and weight decay 5e-4, 2 linear warm-up epochs, VGGFace2's schedule (/10 at
    epochs 7 and 10, lr 1e-4 for epoch 12, stop after 12). Epochs are counted from 1 in
    ``lr_milestones`` / ``final_lr_epoch``, as in the paper. Presets in ``configs/`` build one;
    ``cqa train --set key=value`` overrides any field (``model.stem=light``; see
    ``cqa_core.training.overrides`` for the short aliases such as ``data_root``).

    Attributes:
        model / loss / data: the nested configs.
        seed: seeds model init, data order (per epoch) and flips (per step); same seed, same run.
        epochs: epochs to train. max_steps: stop after this many optimiser steps (None: never).
        batch_size: GLOBAL images per optimiser step, over all processes and accumulation
            micro-batches; each process sees batch_size // (world_size * grad_accum).
        lr / momentum / weight_decay: SGD. lr is the peak after warm-up.
        warmup_epochs: linear warm-up length (fractional epochs allowed).
        lr_milestones / lr_decay: multiply lr by lr_decay from each of these (1-based) epochs on.
        final_lr / final_lr_epoch: from that epoch on, lr is exactly final_lr (paper: 1e-4).
        grad_accum: micro-batches per optimiser step. grad_clip: max global grad norm (None: off).
        precision: ``auto`` (bf16 autocast on CUDA, fp32 on CPU), ``bf16`` (bf16 autocast on
            CUDA or CPU; weights and optimiser state stay fp32) or ``fp32``.
        channels_last / compile: CUDA speed switches (compile = torch.compile on the model).
        device: ``auto`` (cuda if available, else cpu), ``cpu`` or ``cuda``.
        sync_bn: SyncBatchNorm under DDP on CUDA (CPU/gloo has none; ignored there).
        hflip: random horizontal flip, on the device, keyed on (seed, step) (cached views: at build).
        partial_fc: ``auto`` (on from partial_fc_threshold classes), ``on`` or ``off``;
            partial_fc_rate: fraction of class centres sampled per step.
        out_dir: run directory (checkpoints/, metrics.jsonl, tb/, model.safetensors).
        save_every: checkpoint every N optimiser steps (0: only at epoch ends and the end).
        keep_last: checkpoints kept (plus the best by verification accuracy).
        eval_every: verify every N steps and at the last one (0: at every epoch end); eval_pairs: None = off,
            ``auto`` = LFW pairsDevTest under shared_data_dir() (off if absent), or a path.
        eval_max_pairs: cap on verification pairs (None: all).
        log_every: metrics.jsonl / TensorBoard / progress-bar cadence, in steps.
        max_bad_steps: stop after this many NaN/inf steps in a row (each one is skipped).
        progress / tensorboard: tqdm bars and TensorBoard events (rank 0; off if not installed).
        augment: on-the-fly degradations in the loader workers (:class:`AugmentConfig`; off).
        distill: knowledge distillation from a teacher embedder (:class:`DistillConfig`; off).
        init_from: a CQA-Face checkpoint (.safetensors) to start from instead of the seeded
            initialisation, e.g. one written by ``cqa import-backbone``; its ModelConfig must equal
            ``model`` (checked). Unlike ``--resume``, optimiser, step and data order start fresh.
        freeze_stem: fine-tune only the CQA head (LANet branches, QAN, FC-512): the stem's
            parameters get no gradient and its BatchNorm statistics stay fixed (eval mode).
        cache_views: with ``freeze_stem``, the stem output of each face and of this many degraded
            views is computed once into an fp16 disk cache (``training.feature_cache``); each
            epoch draws one view per face and runs only the head. 0 = no cache.
        cache_dir: that cache's folder (None: ``cache_dir()/features/<data>-<stem>``); one built
            for other inputs is refused with what differs. cache_seed: seeds its views.
        rebuild_cache: rebuild a cache built for other inputs (``cqa train --rebuild-cache``).
    """

    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    data: DataConfig = field(default_factory=DataConfig)
    seed: int = 0
    epochs: int = 12
    max_steps: int | None = None
    batch_size: int = 256
    lr: float = 0.03
    momentum: float = 0.9
    weight_decay: float = 5e-4
    warmup_epochs: float = 2.0
    lr_milestones: tuple[int, ...] = (7, 10)
    lr_decay: float = 0.1
    final_lr: float | None = 1e-4
    final_lr_epoch: int | None = 12
    grad_accum: int = 1
    grad_clip: float | None = 5.0
    precision: Literal["auto", "bf16", "fp32"] = "auto"
    channels_last: bool = True
    compile: bool = False
    device: str = "auto"
    sync_bn: bool = False
    hflip: bool = True
    partial_fc: Literal["auto", "on", "off"] = "auto"
    partial_fc_threshold: int = 100_000
    partial_fc_rate: float = 0.3
    out_dir: str = "runs/train"
    save_every: int = 0
    keep_last: int = 3
    eval_every: int = 0
    eval_pairs: str | None = "auto"
    eval_max_pairs: int | None = None
    log_every: int = 10
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    distill: DistillConfig = field(default_factory=DistillConfig)
    init_from: str | None = None
    freeze_stem: bool = False
    cache_views: int = 4
    cache_dir: str | None = None
    cache_seed: int = 0
    rebuild_cache: bool = False
    max_bad_steps: int = 5
    progress: bool = True
    tensorboard: bool = True

    def __post_init__(self) -> None:
        if self.batch_size < 1 or self.grad_accum < 1 or self.epochs < 1:
            raise ValueError("batch_size, grad_accum and epochs must be >= 1")
        if self.precision not in ("auto", "bf16", "fp32"):
            raise ValueError(f"unknown precision {self.precision!r}; choose auto, bf16 or fp32")
        if self.partial_fc not in ("auto", "on", "off"):
            raise ValueError(f"unknown partial_fc {self.partial_fc!r}; choose auto, on or off")
        if self.cache_views < 0 or not 0.0 < self.partial_fc_rate <= 1.0:
            raise ValueError(f"need cache_views >= 0 (0 = no feature cache) and partial_fc_rate in (0, 1], got "
                             f"{self.cache_views} and {self.partial_fc_rate}")


def train_config_from_dict(d: dict[str, Any]) -> TrainConfig:
    """Inverse of :func:`to_dict` for a TrainConfig (lists back to tuples)."""
    d = dict(d)
    nested = {"model": ModelConfig, "loss": LossConfig, "data": DataConfig, "augment": AugmentConfig,
              "distill": DistillConfig}
    for key, cls in nested.items():
        if isinstance(d.get(key), dict):
            d[key] = cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in d[key].items()})
    if isinstance(d.get("lr_milestones"), list):
        d["lr_milestones"] = tuple(d["lr_milestones"])
    known = {f.name for f in dataclasses.fields(TrainConfig)}
    unknown = set(d) - known
    if unknown:
        raise ValueError(f"unknown TrainConfig keys: {sorted(unknown)}")
    return TrainConfig(**d)
