"""The CQA-Face trainer: GPU-first, scales out with ``torchrun``, runs from a notebook cell.

    from cqa_core.training.trainer import Trainer
    from cqa_core.training.overrides import load_preset, apply_overrides
    config = apply_overrides(load_preset("configs/default_cpu.py"), ["max_steps=100"])
    Trainer(config, callbacks=[MyPlot()]).fit()

Precision and distribution live here and only here: the model never autocasts or syncs.
One optimiser step = ``grad_accum`` micro-batches per process; uint8 batches are normalised and
flipped on the device; the loss is Eq. 9 (CQACriterion) or its Partial FC variant. NaN / inf
steps are skipped (no update, BN statistics rolled back) and ``max_bad_steps`` in a row stop the
run. Checkpoints are resumable bit-for-bit on CPU (see ``cqa_core.training.ckpt_state``).
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm

from cqa_core.checkpoint import init_from_checkpoint, save_model
from cqa_core.config import UNLABELLED, TrainConfig, to_dict
from cqa_core.losses import CQACriterion
from cqa_core.model import create_head, create_model
from cqa_core.model.transfer import freeze_stem
from cqa_core.preprocess import normalize
from cqa_core.training import ckpt_state, distributed, feature_cache
from cqa_core.training.callbacks import Callback, JSONLLogger, TensorBoardLogger
from cqa_core.training.data import (
    GlobalBatchSampler,
    build_dataset,
    build_loader,
    needs_keys,
    num_classes_of,
)
from cqa_core.training.distill import DistillLoss
from cqa_core.training.net import TrainNet, seed_everything
from cqa_core.training.partial_fc import PartialFC, create_partial_fc
from cqa_core.training.schedule import lr_at
from cqa_core.training.verify import PairVerifier

log = logging.getLogger(__name__)


class TrainingDiverged(RuntimeError):
    """Raised after ``max_bad_steps`` NaN / inf steps in a row."""


class Trainer:
    """Train CQA-Face as ``config`` says (``dataset`` overrides ``config.data``; ``cache_root``: ``Settings.cache_root``)."""

    def __init__(self, config: TrainConfig, dataset: Any = None, callbacks: Sequence[Callback] = (),
                 resume: str | None = None, cache_root: Path | None = None) -> None:
        self.config = c = config
        self.cache_root = cache_root
        self.dist = distributed.setup(c.device)
        self.device = self.dist.device
        self.out_dir = Path(c.out_dir)
        # bf16 autocast: "auto" on CUDA only; "bf16" also on CPU (AMX / AVX512-BF16: 2.09x fp32, docs/benchmarks.md)
        self.amp = c.precision == "bf16" or (c.precision == "auto" and self.device.type == "cuda")
        # channels_last pays with CUDA or with CPU bf16; plain CPU fp32 keeps NCHW (and its bitwise tests)
        self.channels_last = c.channels_last and (self.device.type == "cuda" or self.amp)
        seed_everything(c.seed)
        self.dataset = dataset if dataset is not None else self._build_dataset()
        self.num_classes = num_classes_of(self.dataset)
        model = create_model(c.model)
        if c.init_from:
            init_from_checkpoint(model, c.init_from)  # e.g. a stem imported with cqa import-backbone
        if c.freeze_stem:
            freeze_stem(model)  # no stem gradients; its BatchNorm stays in eval mode
        use_pfc = c.partial_fc == "on" or (c.partial_fc == "auto" and self.num_classes >= c.partial_fc_threshold)
        if use_pfc and c.distill.mixes:
            raise ValueError("distill.mixes (unlabelled images) needs the plain margin head: set partial_fc=off")
        if use_pfc and self.dist.enabled:  # sharded: each rank holds ceil(K / world_size) centres
            pfc = create_partial_fc(c.loss.head, c.model.embedding_size, self.num_classes, c.loss.scale,
                                    c.loss.margin, c.partial_fc_rate, c.seed, self.dist.rank, self.dist.world_size)
            head = pfc.head
        else:
            head = create_head(c.loss.head, c.model.embedding_size, self.num_classes, c.loss.scale, c.loss.margin)
            pfc = PartialFC(head, c.partial_fc_rate, c.seed) if use_pfc else None
        distill = None
        if c.distill.teacher is not None:
            distill = DistillLoss(c.model.embedding_size, int(self.dataset.targets.shape[1]))
        cached = c.freeze_stem and c.cache_views > 0  # the frozen stem runs once (feature_cache), steps run the head
        self.net = TrainNet(model, CQACriterion(c.loss, head), pfc, distill,
                            (c.distill.cos_weight, c.distill.rel_weight), from_features=cached).to(self.device)
        if self.channels_last:
            self.net.to(memory_format=torch.channels_last)
        self.model, self.head = model, head
        self.cache = (feature_cache.prepare_on_ranks(model.stem, self.dataset, c, self.device, self.amp, self.dist)
                      if cached else None)
        train_set = self.dataset if self.cache is None else self.cache
        # what the checkpoint's head file holds: the margin head, and the distillation projection
        self.head_state: nn.Module = head if distill is None else nn.ModuleDict({"head": head, "distill": distill})
        cuda = self.device.type == "cuda"
        self.optimizer = torch.optim.SGD(self.net.parameters(), lr=c.lr, momentum=c.momentum,
                                         weight_decay=c.weight_decay, fused=cuda or None, foreach=None if cuda else True)
        self.sampler = GlobalBatchSampler(len(train_set), c.batch_size, self.dist.world_size, self.dist.rank,
                                          c.grad_accum, c.seed, keyed=needs_keys(c) or self.cache is not None)
        self.loader = build_loader(train_set, self.sampler, c, self.device)
        self.steps_per_epoch = self.sampler.steps_per_epoch
        self.step, self.epoch, self.position, self.bad_steps = 0, 0, 0, 0
        self.best: dict[str, Any] = {"accuracy": -1.0, "path": None}
        self._stop = False
        self._saved_step = -1
        if resume is not None:
            self.resume(resume)
        self.runner = self._wrap()
        self.callbacks = list(callbacks)
        if self.dist.is_main:
            self.callbacks = [JSONLLogger(self.out_dir / "metrics.jsonl"),
                              *([TensorBoardLogger(self.out_dir / "tb")] if c.tensorboard else []), *self.callbacks]
        # under DDP the other ranks would wait on rank 0's first-use LFW alignment: align only alone
        self.verifier = PairVerifier.build(c, not self.dist.enabled, cache_root) if self.dist.is_main else None

    def _wrap(self) -> nn.Module:
        """DDP (SyncBatchNorm on CUDA if asked) and torch.compile around the training module."""
        runner: nn.Module = self.net
        self.ddp: nn.parallel.DistributedDataParallel | None = None
        if self.dist.enabled:
            if self.config.sync_bn and self.device.type == "cuda":
                runner = nn.SyncBatchNorm.convert_sync_batchnorm(runner)
            ids = [self.device.index] if self.device.type == "cuda" else None
            distributed.ddp_ignore_rank_local(runner)  # Partial FC shards: no broadcast, no all-reduce
            runner = self.ddp = nn.parallel.DistributedDataParallel(runner, device_ids=ids)
        if self.config.compile:
            runner = torch.compile(runner)
        return runner

    def _build_dataset(self) -> Any:
        """The config's dataset; with data.align under DDP rank 0 aligns first, the others wait."""
        if self.config.data.align and self.dist.enabled and not self.dist.is_main:
            distributed.barrier()
        dataset = build_dataset(self.config, self.cache_root)
        if self.config.data.align and self.dist.enabled and self.dist.is_main:
            distributed.barrier()
        return dataset

    # -- public API --------------------------------------------------------------------------
    def request_stop(self) -> None:
        """Stop after the current step (a checkpoint is written); for notebook stop buttons."""
        self._stop = True

    def resume(self, path: str) -> None:
        """Continue from a checkpoint dir ('' = the newest in out_dir): weights, optimiser, RNG, data position."""
        ckpt = ckpt_state.resolve_resume(path, self.out_dir)
        doc = ckpt_state.load_training_state(ckpt, self.model, self.head_state, self.optimizer)
        self.step, self.epoch, self.position = doc["step"], doc["epoch"], doc["position"]
        self.bad_steps, self.best = doc.get("bad_steps", 0), doc.get("best", self.best)
        saved = doc.get("config", {})
        for key in ("seed", "batch_size"):  # these define the data order; a change breaks exactness
            if key in saved and saved[key] != getattr(self.config, key):
                log.warning("resuming with %s=%s but the checkpoint used %s: the run will not replay exactly",
                            key, getattr(self.config, key), saved[key])
        log.info("resumed from %s at step %d (epoch %d, batch %d)", ckpt, self.step, self.epoch, self.position)

    def preprocess(self, images: torch.Tensor, micro: int,
                   visibility: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """uint8 (B, 3, H, W) on the device -> normalised, randomly mirrored float input, and the
        visibility maps (B, H, W) uint8 -> float in [0, 1], mirrored with their images.

        From the feature cache, ``images`` are stem outputs (B, C, h, w) float16 and ``visibility``
        (B, h, w) float in [0, 1], already mirrored when cached: only cast to float32 here."""
        if self.cache is not None:
            return images.float(), visibility  # (B, C, h, w), (B, h, w)
        x = normalize(images)  # (B, 3, H, W) in [-1, 1]
        vis = None if visibility is None else visibility.float() / 255.0  # (B, H, W)
        if self.config.hflip:
            slot = self.dist.rank * self.config.grad_accum + micro  # same slot as GlobalBatchSampler
            key = (self.config.seed * 1_000_003 + self.step) * 4099 + slot
            flip = torch.rand(x.shape[0], generator=torch.Generator().manual_seed(key)) < 0.5  # (B,)
            flip = flip.to(x.device)
            x = torch.where(flip[:, None, None, None], x.flip(3), x)  # (B, 3, H, W)
            if vis is not None:
                vis = torch.where(flip[:, None, None], vis.flip(2), vis)  # (B, H, W)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return x, vis

    def train_step(self, micro_batches: list[tuple[torch.Tensor, torch.Tensor]]) -> dict[str, float] | None:
        """One optimiser step over this process's micro-batches; None if the step was skipped."""
        c, accum = self.config, len(micro_batches)
        lr = lr_at(self.step, self.steps_per_epoch, c)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        if self.net.pfc is not None:
            self.net.pfc.step = self.step
        saved_buffers = [b.detach().clone() for b in self.net.buffers()]
        stats = torch.zeros(9, device=self.device)  # loss, cls, div, quality, distill cos, rel, correct, n, labelled
        for a, batch in enumerate(micro_batches):
            images, labels = batch[0], batch[1]
            extras = batch[2] if len(batch) > 2 else {}  # visibility / target (augment, distill)
            images = images.to(self.device, non_blocking=True)  # (b, 3, H, W) uint8
            labels = labels.to(self.device, non_blocking=True)  # (b,)
            vis = extras["visibility"].to(self.device, non_blocking=True) if "visibility" in extras else None
            target = extras["target"].to(self.device, non_blocking=True) if "target" in extras else None
            x, vis = self.preprocess(images, a, vis)
            all_labels = distributed.all_gather_cat(labels) if self.net.pfc is not None else labels
            sync = a == accum - 1 or self.ddp is None  # all-reduce gradients on the last micro-batch only
            with contextlib.nullcontext() if sync else self.ddp.no_sync():
                with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.amp):
                    terms, correct, aux = self.runner(x, labels, all_labels, vis, target)
                (terms.total / accum).backward()
            stats += torch.cat([torch.stack([terms.total.detach().float(), terms.cls.detach().float(),
                                             terms.diversity.detach().float()]), aux.float(),
                                torch.stack([correct.float(), torch.tensor(float(len(labels)), device=self.device),
                                             (labels != UNLABELLED).sum().float()])])
        distributed.all_reduce_sum(stats)
        params = [p for p in self.net.parameters() if p.grad is not None]
        norm = distributed.clip_grad_norm(params, c.grad_clip if c.grad_clip is not None else math.inf)
        values = stats.tolist()
        if not (math.isfinite(values[0]) and math.isfinite(float(norm))):
            self.optimizer.zero_grad(set_to_none=True)
            with torch.no_grad():
                for buf, old in zip(self.net.buffers(), saved_buffers, strict=True):
                    buf.copy_(old)
            self.bad_steps += 1
            warnings.warn(f"step {self.step + 1}: non-finite loss/gradient (loss={values[0]}, grad norm="
                          f"{float(norm)}); step skipped ({self.bad_steps}/{c.max_bad_steps} in a row)",
                          RuntimeWarning, stacklevel=2)
            if self.bad_steps >= c.max_bad_steps:
                raise TrainingDiverged(f"training stopped: {self.bad_steps} non-finite steps in a row at step "
                                       f"{self.step + 1}; lower lr (now {lr:g}) or check the data. Last good "
                                       f"checkpoint: {self.out_dir / 'checkpoints'}")
            return None
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.bad_steps = 0
        n, parts = values[7] / self.dist.world_size, accum * self.dist.world_size
        out = {"lr": lr, "loss": values[0] / parts, "cls": values[1] / parts, "div": values[2] / parts}
        if c.loss.quality_weight > 0:
            out["quality_loss"] = values[3] / parts
        if c.distill.teacher is not None:
            out["distill_cos"], out["distill_rel"] = values[4] / parts, values[5] / parts
        return {**out, "train_acc": values[6] / max(values[8], 1), "grad_norm": float(norm),
                "images": n * self.dist.world_size}

    # -- loop ----------------------------------------------------------------------------------
    def fit(self) -> dict[str, Any]:
        """Train until ``epochs`` / ``max_steps`` / ``request_stop()``; return the last metrics."""
        c = self.config
        total = c.epochs * self.steps_per_epoch
        if c.max_steps is not None:
            total = min(total, c.max_steps)
        if self.dist.is_main:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            (self.out_dir / "config.json").write_text(json.dumps(to_dict(c), indent=1))
        self._emit("on_train_start")
        bar = self._progress(total)
        last: dict[str, Any] = {}
        t0, images = time.perf_counter(), 0.0
        try:
            while self.step < total and self.epoch < c.epochs and not self._stop:
                self.sampler.set_epoch(self.epoch, self.position)
                batches, epoch = iter(self.loader), self.epoch
                while self.epoch == epoch and self.step < total and not self._stop:
                    metrics = self.train_step([next(batches) for _ in range(c.grad_accum)])
                    self.step += 1
                    self.position += 1
                    if self.position == self.steps_per_epoch:
                        self.epoch, self.position = self.epoch + 1, 0
                    if metrics is not None:
                        images += metrics.pop("images")
                        last = {"step": self.step, "epoch": self.step / self.steps_per_epoch, **metrics,
                                "images_per_s": images / (time.perf_counter() - t0)}
                    if bar is not None:
                        bar.update(1)
                    if metrics is not None and (self.step % c.log_every == 0 or self.step == total):
                        if bar is not None:
                            bar.set_postfix(loss=f"{last['loss']:.3f}", lr=f"{last['lr']:.2g}")
                        self._emit("on_step", last)
                    at_epoch_end = self.position == 0
                    if c.eval_every and (self.step % c.eval_every == 0 or self.step == total):
                        self.evaluate()
                    elif not c.eval_every and at_epoch_end:
                        self.evaluate()
                    if (c.save_every and self.step % c.save_every == 0) or at_epoch_end:
                        self.save_checkpoint()
                    if at_epoch_end:
                        self._emit("on_epoch", {"step": self.step, "epoch": self.epoch, **last})
                    self._sync_stop()
        finally:
            if bar is not None:
                bar.close()
        self.save_checkpoint()
        self._finish()
        return last

    def evaluate(self) -> dict[str, float] | None:
        """Verification accuracy on the held-out pairs (rank 0), or None when off."""
        result = None
        if self.verifier is not None:
            result = {"step": self.step, **self.verifier(self.model, self.device)}
            if result["accuracy"] > self.best["accuracy"]:
                path = self.save_checkpoint()
                self.best = {"accuracy": result["accuracy"], "path": str(path) if path else None}
            self._emit("on_eval", result)
        distributed.barrier()
        return result

    def save_checkpoint(self) -> Path | None:
        """Write a resumable checkpoint (rank 0) unless weights are non-finite; prune old ones."""
        if not self.dist.is_main:
            return None
        root = self.out_dir / "checkpoints"
        if self._saved_step == self.step and (root / f"step_{self.step:08d}").is_dir():
            return root / f"step_{self.step:08d}"
        if not all(bool(torch.isfinite(p).all()) for p in self.net.parameters()):
            log.error("not writing a checkpoint at step %d: parameters are not finite", self.step)
            return None
        state = {"epoch": self.epoch, "position": self.position, "bad_steps": self.bad_steps,
                 "best": self.best, "config": to_dict(self.config), "world_size": self.dist.world_size}
        path = ckpt_state.save_training_state(root, self.step, self.model, self.head_state, self.optimizer, state)
        best = Path(self.best["path"]) if self.best.get("path") else None
        ckpt_state.prune(root, self.config.keep_last, best)
        self._saved_step = self.step
        return path

    # -- helpers -----------------------------------------------------------------------------
    def _emit(self, hook: str, *args: Any) -> None:
        for cb in self.callbacks:
            getattr(cb, hook)(self, *args)

    def _progress(self, total: int) -> Any:
        if not (self.config.progress and self.dist.is_main):
            return None

        return tqdm(total=total, initial=self.step, desc="train", unit="step", dynamic_ncols=True)

    def _sync_stop(self) -> None:
        """Make a stop requested on rank 0 (a notebook button) stop every rank."""
        if self.dist.enabled:
            flag = torch.tensor([float(self._stop)], device=self.device)
            self._stop = bool(distributed.all_reduce_sum(flag).item() > 0)

    def _finish(self) -> None:
        if self.dist.is_main and all(bool(torch.isfinite(p).all()) for p in self.model.parameters()):
            save_model(self.out_dir / "model.safetensors", self.model, extra={"step": self.step})
        self._emit("on_train_end")
        distributed.barrier()
