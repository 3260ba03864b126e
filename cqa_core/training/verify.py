"""Periodic verification during training: LFW View-1 pairs (pairsDevTest) -> accuracy.

``eval_pairs="auto"`` reads ``lfw_dir()/pairsDevTest.txt`` and scores
pairs with ``cqa_core.evaluate``. Only the photos the (possibly ``eval_max_pairs``-capped) pairs
use are aligned (pairsDevTest: 1,549 of LFW's 13,233 photos), into the same cache folder a full
``ensure_aligned`` run fills, so that run later skips them; a complete cache is used as it is.
Anything missing (data or the data layer) turns verification off with one log line, never an
error.
Embeddings are the sum of the image's and its mirror's (insightface's flip test).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from cqa_core.config import TrainConfig
from cqa_core.data import data_place
from cqa_core.data.pairs import pair_paths, read_pairs
from cqa_core.data.verification import aligned_pair_photos
from cqa_core.metrics import evaluate_pairs
from cqa_core.preprocess import normalize
from cqa_core.settings import LFW_DIR

log = logging.getLogger(__name__)


class PairVerifier:
    """Holds the pair list and image paths; ``__call__(model)`` -> {"accuracy": ...}."""

    def __init__(self, paths: list[tuple[Path, Path]], issame: list[bool], folds: list[int] | None = None) -> None:
        self.paths, self.issame, self.folds = paths, issame, folds

    @staticmethod
    def build(config: TrainConfig, allow_align: bool = True, cache_root: Path | None = None) -> PairVerifier | None:
        """A verifier for ``config.eval_pairs``, or None (with the reason logged) when unusable.

        Args:
            config: the run's config.
            allow_align: align the pairs' photos on first use; if False (DDP runs, where other
                ranks would wait on it) photos without a crop turn verification off instead.
            cache_root: where the aligned crops are kept (``Settings.cache_root``; None: its default).
        """
        if config.eval_pairs is None:
            return None
        pairs_file = (
            data_place(None) / LFW_DIR / "pairsDevTest.txt"  # `cqa train` resolves "auto" from its settings
            if config.eval_pairs == "auto" else Path(config.eval_pairs)
        )
        if not pairs_file.is_file():
            log.warning("verification off: %s not found", pairs_file)
            return None
        try:
            pairs = read_pairs(pairs_file)
            if config.eval_max_pairs and len(pairs) > config.eval_max_pairs:  # evenly spaced: same and different
                pairs = pairs[:: len(pairs) // config.eval_max_pairs][: config.eval_max_pairs]
            root = aligned_pair_photos(pairs_file.parent, pairs, allow_align, cache_root=cache_root)
        except Exception as exc:  # alignment needs optional deps; training must go on
            log.warning("verification off: could not prepare %s (%s)", pairs_file, exc)
            return None
        if root is None:
            log.warning("verification off: the photos of %s are not aligned yet; run `cqa align` (or one "
                        "single-process training run) first", pairs_file)
            return None

        try:
            paths = pair_paths(pairs, root)
        except FileNotFoundError as exc:
            log.warning("verification off: %s", exc)
            return None
        folds = [p.fold for p in pairs]
        if len(set(folds)) == 1:  # View 1 lists are one block of same then different pairs:
            folds = [i % 10 for i in range(len(pairs))]  # interleave into 10 mixed folds
        return PairVerifier(paths, [bool(p.same) for p in pairs], folds)

    @torch.no_grad()
    def embed(self, model: torch.nn.Module, files: list[Path], device: torch.device, batch: int = 64) -> torch.Tensor:
        """L2-normalised flip-summed embeddings (N, D) of image files."""
        out = []
        for i in range(0, len(files), batch):
            arrs = []
            for f in files[i : i + batch]:
                with Image.open(f) as im:
                    arrs.append(np.asarray(im.convert("RGB").resize((112, 112)), dtype=np.uint8))
            x = torch.from_numpy(np.stack(arrs)).permute(0, 3, 1, 2).to(device)  # (b, 3, 112, 112) uint8
            x = normalize(x)  # (b, 3, 112, 112)
            e = model(x).embedding.float() + model(x.flip(3)).embedding.float()  # (b, D)
            out.append(torch.nn.functional.normalize(e).cpu())
        return torch.cat(out)  # (N, D)

    def __call__(self, model: torch.nn.Module, device: torch.device) -> dict[str, float]:
        was = model.training
        model.eval()
        try:
            e1 = self.embed(model, [a for a, _ in self.paths], device)  # (P, D)
            e2 = self.embed(model, [b for _, b in self.paths], device)  # (P, D)
        finally:
            model.train(was)

        folds = None if self.folds is None else np.asarray(self.folds)
        result = evaluate_pairs(e1.numpy(), e2.numpy(), np.asarray(self.issame, dtype=bool), folds)
        return {"accuracy": float(result.accuracy), "pairs": len(self.paths)}
