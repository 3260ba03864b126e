"""A synthetic run in the real layout: for tests, benchmarks and views, with no model and no photo.

    synthetic_run("runs/synth", pairs=1_000_000, faces=100_000)

Faces belong to identities of ``per_identity`` faces each and get a quality uniform in [0.2, 1].
Half the pairs are genuine (two faces of one identity), half impostor. Scores are drawn so that
low quality hurts: genuine ``N(0.30 + 0.45 q, 0.12)``, impostor ``N(0.05, 0.10)`` with q the pair's
lower face quality, so the errors gather in the low-quality deciles as they do in real runs.
Thresholds and accuracy come from ``metrics.evaluate_scores``, exactly as for a recorded run.
"""

from __future__ import annotations

import hashlib
import os
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from cqa_core.evaluation.runs.store import scored_columns, write_run
from cqa_core.metrics import default_folds, evaluate_scores


def synthetic_run(folder: str | os.PathLike, pairs: int = 6000, faces: int = 2000, per_identity: int = 5,
                  dim: int = 32, seed: int = 0, name: str = "synthetic", shift: float = 0.0) -> Path:
    """Write a synthetic run of ``pairs`` pairs over ``faces`` faces into ``folder``.

    Args:
        folder: the run folder (created).
        pairs: number of pairs (half genuine).
        faces: number of faces.
        per_identity: faces per identity.
        dim: embedding width (random unit vectors: the scores are drawn, not computed from them).
        seed: everything is drawn from it, except the scores when ``shift`` differs (see below).
        name: the model's name in ``run.json``.
        shift: added to every genuine score, drawn with ``seed + 1``: a second "recognizer" on the
            same pairs (same pair list, other scores) for comparisons.
    """
    rng = np.random.default_rng(seed)
    ident = np.arange(faces) // per_identity  # (F,)
    quality = rng.uniform(0.2, 1.0, faces).astype(np.float32)  # (F,)
    n_same = pairs // 2
    f1 = rng.integers(0, faces, pairs)  # (N,)
    f2 = rng.integers(0, faces, pairs)  # (N,)
    base = (f1[:n_same] // per_identity) * per_identity
    f2[:n_same] = base + (f1[:n_same] - base + 1 + rng.integers(0, per_identity - 1, n_same)) % per_identity
    f2[n_same:] = np.where(ident[f2[n_same:]] == ident[f1[n_same:]], (f2[n_same:] + per_identity) % faces, f2[n_same:])
    same = np.arange(pairs) < n_same  # (N,)
    order = rng.permutation(pairs)
    f1, f2, same = f1[order], f2[order], same[order]
    q = np.minimum(quality[f1], quality[f2])  # (N,)
    srng = np.random.default_rng(seed if shift == 0.0 else seed + 1)
    score = np.where(same, srng.normal(0.30 + 0.45 * q + shift, 0.12), srng.normal(0.05, 0.10, pairs))  # (N,)
    folds = default_folds(pairs)  # (N,)
    r = evaluate_scores(score, same, folds)
    thresholds = {int(k): float(t) for k, t in zip(np.unique(folds).tolist(), r.fold_thresholds, strict=True)}
    cols = scored_columns(score, same, folds, thresholds, quality[f1], quality[f2])
    paths = np.array([f"synthetic/person_{i:06d}/{i:06d}_{j % per_identity:02d}.jpg" for j, i in enumerate(ident)])
    ids = np.array([f"person_{i:06d}" for i in ident])
    align = np.where(rng.random(faces) < 0.9, "mtcnn", "center")
    n = np.full(pairs, "none")
    table: dict[str, Any] = {"pair_id": np.arange(pairs, dtype=np.int32), "face1": f1.astype(np.int32),
                             "face2": f2.astype(np.int32), "path1": paths[f1], "path2": paths[f2],
                             "identity1": ids[f1], "identity2": ids[f2]}
    table.update({k: cols[k] for k in ("same", "fold", "score", "threshold", "predicted", "correct", "outcome",
                                       "margin", "correct_margin")})
    table.update(edit=n, edited_side=n, edit1=n, edit2=n, quality1=cols["quality1"], quality2=cols["quality2"],
                 quality_kind=np.full(pairs, "norm"), pair_quality=cols["pair_quality"],
                 quality_decile=cols["quality_decile"], align1=align[f1], align2=align[f2])
    emb = rng.normal(size=(faces, dim)).astype(np.float32)  # (F, dim)
    norm = np.linalg.norm(emb, axis=1)
    face_table = {"face_id": np.arange(faces, dtype=np.int32), "image": np.arange(faces, dtype=np.int32),
                  "path": paths, "identity": ids, "edit": np.full(faces, "none"), "seed": np.full(faces, -1, np.int32),
                  "quality": quality, "quality_kind": np.full(faces, "norm"), "norm": norm, "alignment": align}
    digest = hashlib.sha1(f"{pairs}:{faces}:{per_identity}:{seed}".encode()).hexdigest()[:16]
    meta = {"data": f"synthetic:{seed}", "protocol": "verify", "flip": False, "model_kind": "synthetic",
            **r.to_dict(), "images": faces, "model": {"name": name, "kind": "synthetic", "digest": f"{name}:{shift}",
                                                        "source": None},
            "options": {"seed": seed, "per_identity": per_identity}, "fold_thresholds": thresholds,
            "pairs_digest": digest, "n_faces": faces, "quality_kind": "norm",
            "date": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    return write_run(folder, meta, table, face_table, emb)
