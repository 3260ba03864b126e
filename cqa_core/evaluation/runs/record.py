"""Record a run: score a protocol's pairs with any recognizer and keep every pair (``cqa eval --out``).

    result, rows = record_run(rec, "lfw", "masked-m2n", Options(mask="surgical"), "runs/cqa-lfw-m2n")

The faces come from the embedding cache where it has them (``runs.embcache``): a rerun reads no
image at all, and a second protocol on the same data scores only its edited faces. Under
``torchrun`` each process scores every ``world``-th missing face and adds its own shard to the
cache; after a barrier every process reads the merged group, and rank 0 writes the run:

    torchrun --nproc_per_node 8 -m cqa_core.commands.eval --model M --data lfw --out runs/m-lfw

The aggregates (``run.json``) come from the same ``metrics.evaluate_pairs`` and ``protocols.pair_result`` that
``cqa eval`` prints, on the same embeddings, so they are its numbers.
"""

from __future__ import annotations

import logging
import os
import platform
import time
from dataclasses import fields
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cqa_core.data.align import ALIGN_VERSION
from cqa_core.evaluation.protocols import PAIR_PROTOCOLS, Options, pair_result, second_side
from cqa_core.evaluation.runs.calibration import save_calibration
from cqa_core.evaluation.runs.embcache import EmbeddingCache
from cqa_core.evaluation.runs.faces import face_readings, quality_of
from cqa_core.evaluation.runs.plan import FacePlan, PairList, face_plan, pair_list, protocol_edit
from cqa_core.evaluation.runs.store import scored_columns, write_run
from cqa_core.metrics import evaluate_scores, pair_scores
from cqa_core.recognizers.base import Recognizer
from cqa_core.settings import Settings
from cqa_core.training.distributed import DistInfo, barrier

log = logging.getLogger(__name__)


def default_cache(places: Settings) -> EmbeddingCache:
    """The embedding cache under the entry point's ``cache_root`` (``$CQA_CACHE``, else ~/.cache/cqa-face)."""
    return EmbeddingCache(places.cache_root / "embeddings")


def _alignment(pl: PairList, images: np.ndarray) -> np.ndarray:
    """Alignment method of each image ("given" for crops whose photo's alignment is unknown)."""
    src = pl.pairset().sources
    return np.array([src[i][1].get("method", "mtcnn") if src else "given" for i in images.tolist()], dtype=str)


def _score(rec: Recognizer, pl: PairList, plan: FacePlan, rows: np.ndarray, protocol: str, photo: bool,
           opts: Options, progress: bool) -> dict[str, np.ndarray]:
    """Readings of the plan's faces ``rows`` (loads the images; edits drawn with each face's seed)."""
    ps = pl.pairset()
    img, seed = plan.image[rows], plan.seed[rows]
    if (seed < 0).all():
        faces = ps.images[img]  # (K, 112, 112, 3)
        sources = [ps.sources[i] for i in img.tolist()] if photo and ps.sources else None
    else:
        faces = np.stack([second_side(ps.images, np.array([i]), protocol, opts, offset=int(s))[0]
                          for i, s in zip(img.tolist(), seed.tolist(), strict=True)])  # (K, 112, 112, 3)
        sources = None
    readings = face_readings(rec, faces, sources, flip=opts.flip, batch_size=opts.batch_size, device=opts.device,
                             progress=progress)
    readings["alignment"] = _alignment(pl, img)
    return readings


def gather_readings(rec: Recognizer, pl: PairList, plan: FacePlan, protocol: str, opts: Options,
                    cache: EmbeddingCache | None, progress: bool = True, dist: DistInfo | None = None
                    ) -> tuple[dict[str, np.ndarray], dict[str, int]]:
    """Readings of every face of ``plan`` (cache first, the rest scored and added): (readings, counts).

    ``dist``: this process's place under torchrun; each process scores its share of the missing faces
    into a shard of its own, and all read the merged cache after a barrier (a cache is then required).
    """
    rank, world = (dist.rank, dist.world_size) if dist else (0, 1)
    if world > 1 and cache is None:
        raise ValueError("under torchrun the processes share their faces through the embedding cache: drop --no-cache")
    digest = rec.digest
    photo = protocol == "verify" and not rec.preprocess.is_arcface112  # chips cut from the photos
    parts: list[dict[str, np.ndarray]] = []
    hits = 0
    for clean in (True, False):
        rows = np.flatnonzero((plan.seed < 0) == clean)
        if not len(rows):
            continue
        keys = [pl.keys[i] if s < 0 else f"{pl.keys[i]}@{s}" for i, s in zip(plan.image[rows].tolist(),
                                                                             plan.seed[rows].tolist(), strict=True)]
        group = cache.group(digest=digest, data=pl.spec, align=f"{pl.align}-v{ALIGN_VERSION}",
                            edit="none" if clean else protocol_edit(protocol, opts),
                            chip="photo" if clean and photo else "crop", flip=opts.flip) if cache else None
        got, found = group.load(keys) if group else ({}, np.zeros(len(rows), bool))
        missing = np.flatnonzero(~found)
        hits += int(found.sum())
        if world > 1:  # this process's share into a shard of its own, then every shard
            mine = missing[rank::world]
            if len(mine):
                group.add([keys[i] for i in mine.tolist()],
                          _score(rec, pl, plan, rows[mine], protocol, clean and photo, opts, progress))
            barrier()
            got, found = group.load(keys)
            if not found.all():
                raise RuntimeError(f"{int((~found).sum())} faces are missing from the cache after every process "
                                   f"scored its share ({group.folder})")
            missing = missing[:0]
        if len(missing):
            new = _score(rec, pl, plan, rows[missing], protocol, clean and photo, opts, progress)
            if group:
                group.add([keys[i] for i in missing.tolist()], new)
            for name, a in new.items():
                if name not in got or got[name].shape[1:] != a.shape[1:]:
                    got[name] = np.zeros((len(rows), *a.shape[1:]), a.dtype)
                elif a.dtype.kind == "U" and a.dtype.itemsize > got[name].dtype.itemsize:
                    got[name] = got[name].astype(a.dtype)
                got[name][missing] = a
        parts.append(got)
    names = set.intersection(*(set(p) for p in parts))
    readings = {n: np.concatenate([p[n] for p in parts]) for n in names}
    return readings, {"faces": len(plan.image), "from_cache": hits, "scored": len(plan.image) - hits}


def options_dict(opts: Options) -> dict[str, Any]:
    """The protocol's options as JSON (the data root named; the cache root is no option of the run)."""
    out = {f.name: getattr(opts, f.name) for f in fields(opts) if f.name != "places"}
    out.update(align=opts.align.value, data_root=str(opts.places.data_root))
    return out


def machine() -> dict[str, Any]:
    """Where a run was made: host, platform, CPU count, Python and torch versions, GPU name."""
    return {"host": platform.node(), "platform": platform.platform(), "cpus": os.cpu_count(),
            "python": platform.python_version(), "torch": torch.__version__,
            "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}


def record_run(rec: Recognizer, data: str, protocol: str, opts: Options, out: str | os.PathLike,
               cache: EmbeddingCache | None = None, progress: bool = True, spec: str | None = None,
               dist: DistInfo | None = None) -> tuple[dict[str, Any], list[tuple[str, str]]] | None:
    """Score ``protocol`` on ``data`` with ``rec`` and write the run folder ``out``.

    Args:
        rec: any recognizer.
        data: a ``--data`` spec (lfw, celeba299, bin:PATH, pairs:ROOT:FILE).
        protocol: one of :data:`~cqa_core.evaluation.protocols.PAIR_PROTOCOLS`.
        opts: the protocol's options.
        out: the run folder (created).
        cache: the embedding cache (None: score every face).
        progress: show tqdm bars.
        spec: the model spec that loads ``rec`` again (``recognizers.load``: "default", "dlib", a path),
            kept in ``run.json`` so a view can open a pair under the run's recognizer.
        dist: this process's place under torchrun (``training.distributed.setup``); None: one process.

    Returns:
        (the JSON-ready aggregates, as ``evaluate`` returns them, the rows ``cqa eval`` prints); None on
        a rank other than 0 (rank 0 writes the run).
    """
    if protocol not in PAIR_PROTOCOLS:
        raise ValueError(f"a run keeps pairs: --out works with {', '.join(PAIR_PROTOCOLS)}, not {protocol}")
    t0, started = time.perf_counter(), datetime.now(timezone.utc)
    pl = pair_list(data, opts)
    plan = face_plan(pl, protocol, opts)
    t1 = time.perf_counter()
    readings, counts = gather_readings(rec, pl, plan, protocol, opts, cache, progress, dist)
    if dist is not None and dist.rank != 0:
        return None
    t2 = time.perf_counter()
    emb = readings["embedding"]  # (F, D)
    score = pair_scores(emb[plan.face1], emb[plan.face2])  # (N,) as metrics.evaluate_pairs scores them
    r = evaluate_scores(score, pl.issame, pl.folds)
    res, rows = pair_result(r, len(pl.keys), protocol, opts)
    result = {"data": data, "protocol": protocol, "flip": opts.flip, "model_kind": rec.kind, **res}
    quality, kind = quality_of(readings)
    thresholds = {int(k): float(t) for k, t in zip(np.unique(pl.folds).tolist(), r.fold_thresholds, strict=True)}
    f1, f2, img = plan.face1, plan.face2, plan.image
    edit = np.array(plan.edit, dtype=str)
    paths, ids = np.array(pl.paths, dtype=str), np.array(pl.identities, dtype=str)
    pairs = {"pair_id": np.arange(len(score), dtype=np.int32), "face1": f1.astype(np.int32),
             "face2": f2.astype(np.int32), "path1": paths[img[f1]], "path2": paths[img[f2]],
             "identity1": ids[img[f1]], "identity2": ids[img[f2]]}
    cols = scored_columns(score, pl.issame, pl.folds, thresholds, quality[f1], quality[f2])
    pairs.update({k: cols[k] for k in ("same", "fold", "score", "threshold", "predicted", "correct", "outcome",
                                       "margin", "correct_margin")})
    pairs.update(edit=np.full(len(score), protocol_edit(protocol, opts)), edited_side=np.full(len(score), plan.edited_side),
                 edit1=edit[f1], edit2=edit[f2])
    pairs.update({k: cols[k] for k in ("quality1", "quality2")})
    pairs.update(quality_kind=np.full(len(score), kind), pair_quality=cols["pair_quality"],
                 quality_decile=cols["quality_decile"], align1=readings["alignment"][f1],
                 align2=readings["alignment"][f2])
    faces = {"face_id": np.arange(len(img), dtype=np.int32), "image": img.astype(np.int32), "path": paths[img],
             "identity": ids[img], "edit": edit, "seed": plan.seed.astype(np.int32), "quality": quality,
             "quality_kind": np.full(len(img), kind), "norm": readings["norm"], "alignment": readings["alignment"]}
    faces.update({k: readings[k] for k in ("branch_quality", "cal") if k in readings})
    timing = {"load_s": t1 - t0, "embed_s": t2 - t1, "total_s": time.perf_counter() - t0}
    result.update(timing={k: round(v, 2) for k, v in timing.items()}, device=opts.device)
    meta = {**result, "model": {"name": rec.name, "kind": rec.kind, "digest": rec.digest,
                                "source": rec.source, "spec": spec or rec.source},
            "options": options_dict(opts), "fold_thresholds": thresholds,
            "pairs_digest": pl.digest(), "n_faces": len(img), "quality_kind": kind, "faces": counts,
            "date": started.isoformat(timespec="seconds"), "machine": machine(),
            "duration_s": round(time.perf_counter() - t0, 3)}
    write_run(out, meta, pairs, faces, emb)
    _calibrate(Path(out))
    return result, rows


def _calibrate(folder: Path) -> None:
    """Fit the run's calibration (``calibration.json``) where scikit-learn is installed."""
    try:
        save_calibration(folder)
    except ImportError as exc:
        log.info("no calibration for %s: %s", folder, exc)
    except ValueError as exc:  # one class only, one fold: nothing to calibrate on
        log.info("no calibration for %s: %s", folder, exc)
