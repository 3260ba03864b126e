"""A 2-D map of a run's faces (UMAP of their embeddings), computed once and kept in the run folder.

    xy = embedding_map("runs/cqa-lfw")   # {"face_id": (K,), "x": (K,), "y": (K,)}; map.npz in the folder

UMAP (umap-learn) with the cosine metric, ``n_neighbors`` capped below the number of faces, a fixed
seed. Runs of more than ``max_faces`` faces are mapped on every k-th face. umap-learn imports
numba, not torch: a dashboard kernel can compute it (tens of seconds the first time, JIT included).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from cqa_core.evaluation.runs.store import Run, RunError

MAP_FILE = "map.npz"


def embedding_map(run: Run | str | os.PathLike, max_faces: int = 20_000, seed: int = 0,
                  n_neighbors: int = 15) -> dict[str, np.ndarray]:
    """The run's face map (cached in ``map.npz``; see the module docstring)."""
    run = run if isinstance(run, Run) else Run(run)
    path = Path(run.folder) / MAP_FILE
    digest = f"{run.meta.get('model', {}).get('digest')}:{run.meta.get('pairs_digest')}:{max_faces}:{seed}"
    if path.is_file():
        with np.load(path) as z:
            if str(z["key"]) == digest:
                return {k: z[k] for k in ("face_id", "x", "y")}
    emb = run.embeddings()  # (F, D) memmap
    if len(emb) < 4:
        raise RunError(f"{run.folder} has {len(emb)} faces: too few for a map")
    step = max(1, -(-len(emb) // max_faces))
    ids = np.arange(0, len(emb), step)  # (K,)
    x = np.asarray(emb[ids], np.float32)  # (K, D)
    import umap  # optional: the workbench extra; numba's import takes seconds

    reducer = umap.UMAP(n_neighbors=min(n_neighbors, len(ids) - 1), metric="cosine", random_state=seed,
                        init="random" if len(ids) < 50 else "spectral")
    xy = reducer.fit_transform(x)  # (K, 2)
    out = {"face_id": ids.astype(np.int32), "x": xy[:, 0].astype(np.float32), "y": xy[:, 1].astype(np.float32)}
    tmp = path.with_name(f".{MAP_FILE}.tmp.npz")
    np.savez(tmp, key=np.array(digest), **out)
    os.replace(tmp, path)
    return out
