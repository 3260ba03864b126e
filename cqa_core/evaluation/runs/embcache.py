"""The embedding cache: a face scored once by a model is never scored again.

Faces are grouped by what decides their readings (:meth:`EmbeddingCache.group`): the weights
digest, the data spec, the alignment (mode and version), the protocol's edit, the chip source and
the flip. Inside a group each face is found by its key (``plan``: the image key, plus ``@seed``
for an edited face), so a second protocol on the same data reuses its clean faces, a rerun reuses
everything, and a larger ``--limit`` scores only the faces it adds.

Layout: ``ROOT/<group digest>/group.json`` (the parts, readable) and ``shard-<id>.npz`` files, one
per call that added faces (``keys`` plus one array per reading, float32 embeddings so a rerun from
the cache reproduces the run to the last digit). Shards are written to a temporary name and
renamed, so a reader never sees half a shard, and two writers never write the same file. A load
that finds faces says in one line how many, where they live and when the group was first written.
"""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cqa_core.data.reuse import files_size, human_bytes, say_reused


@dataclass(frozen=True)
class CacheGroup:
    """The faces of one (weights, data, alignment, edit, chip, flip) combination."""

    folder: Path
    parts: dict

    def _shards(self) -> list[Path]:
        return sorted(self.folder.glob("shard-*.npz")) if self.folder.is_dir() else []

    def load(self, keys: list[str]) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """(readings with one row per key, rows of keys not found zeroed; found (K,) bool)."""
        found = np.zeros(len(keys), bool)
        out: dict[str, np.ndarray] = {}
        where = {k: i for i, k in enumerate(keys)}
        for shard in self._shards():
            with np.load(shard, allow_pickle=False) as z:
                have = z["keys"].tolist()
                pick = [(where[k], j) for j, k in enumerate(have) if k in where and not found[where[k]]]
                if not pick:
                    continue
                dst, src = (np.array(x) for x in zip(*pick, strict=True))
                for name in z.files:
                    if name == "keys":
                        continue
                    a = z[name]
                    if name not in out:
                        out[name] = np.zeros((len(keys), *a.shape[1:]), a.dtype)
                    elif out[name].dtype != a.dtype and a.dtype.kind == "U":  # wider strings in this shard
                        out[name] = out[name].astype(a.dtype)
                    out[name][dst] = a[src]
                found[dst] = True
        if found.any():
            self.say_reused(int(found.sum()), len(keys))
        return out, found

    def say_reused(self, hits: int, asked: int) -> str | None:
        """The one line a run that reuses stored embeddings prints: how many, where, built when."""
        shards, info = self._shards(), self.folder / "group.json"
        p = self.parts
        details = [f"weights {str(p.get('digest'))[:12]}", str(p.get("data")), str(p.get("align")),
                   *([f"edit {p['edit']}"] if p.get("edit") not in (None, "none") else []),
                   f"{len(shards)} shard{'s' * (len(shards) != 1)}", human_bytes(files_size(shards))]
        built = info if info.is_file() else shards[0]
        return say_reused(f"{hits:,} of {asked:,} stored embeddings", self.folder, details, built)

    def add(self, keys: list[str], readings: dict[str, np.ndarray]) -> Path:
        """Store the readings of ``keys`` (each array leads with the key axis) as a new shard."""
        self.folder.mkdir(parents=True, exist_ok=True)
        info = self.folder / "group.json"
        if not info.exists():
            info.write_text(json.dumps(self.parts, indent=1, sort_keys=True))
        name = f"shard-{uuid.uuid4().hex[:12]}.npz"
        tmp = self.folder / f".{name}.tmp"
        with open(tmp, "wb") as f:
            np.savez(f, keys=np.array(keys, dtype=str), **readings)
        os.replace(tmp, self.folder / name)
        return self.folder / name


class EmbeddingCache:
    """Per-face readings on disk under ``root`` (default ``Settings.cache_root / "embeddings"``)."""

    def __init__(self, root: str | os.PathLike) -> None:
        self.root = Path(root)

    def group(self, *, digest: str, data: str, align: str, edit: str, chip: str, flip: bool) -> CacheGroup:
        """The group of faces scored by weights ``digest`` on ``data`` with this alignment, edit, chip and flip."""
        parts = {"digest": digest, "data": data, "align": align, "edit": edit, "chip": chip, "flip": bool(flip)}
        key = hashlib.sha1(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:20]
        return CacheGroup(self.root / key, parts)
