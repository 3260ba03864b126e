"""Which faces a run scores, named so that a cache can find them again without loading a pixel.

A :class:`PairList` is a ``--data`` spec's pairs (after ``--limit`` and the folds) with a stable key
per image: the photo's path relative to its data root for LFW-format lists (read from the list
alone), else the sha1 of the aligned crop. A :class:`FacePlan` lists the faces a protocol scores:
the clean faces it uses, then the edited ones (masked or degraded), each an image plus the seed the
protocol draws its edit with (``evaluation.protocols.second_side``: pair k's second face gets seed
k, M2M's first face seed N + k), so a face is the same face in every protocol that draws it.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from cqa_core.data.degrade import MASK_KINDS
from cqa_core.data.pairs import image_name, read_pairs, resolve_image, unique_images
from cqa_core.data.verification import PairSet, load_pairset, subsample
from cqa_core.evaluation.protocols import Options, refold
from cqa_core.settings import Settings

EDITED = {"verify": "none", "masked-m2n": "second", "masked-m2m": "both", "cross-quality": "second"}
"""Which faces of a pair a protocol edits."""


@dataclass
class PairList:
    """The pairs of a data spec and a stable key per image (arrays numpy).

    Attributes:
        spec: the ``--data`` spec.
        keys: per image, its cache key (relative photo path, or ``sha1:`` of the crop).
        paths: per image, the file a viewer opens (the photo), or ``spec#i`` when there is none.
        identities: per image, the person's name where the data says it ("" otherwise).
        index1: (N,) image of each pair's first face; index2 likewise.
        issame: (N,) bool.
        folds: (N,) fold of each pair.
        align: the alignment mode ("mtcnn" / "center").
        limit: pairs kept (``Options.limit``).
        places: the data and cache roots (``Options.places``).
    """

    spec: str
    keys: list[str]
    paths: list[str]
    identities: list[str]
    index1: np.ndarray
    index2: np.ndarray
    issame: np.ndarray
    folds: np.ndarray
    align: str = "mtcnn"
    limit: int | None = None
    places: Settings = field(default_factory=Settings)
    _pairset: PairSet | None = field(default=None, repr=False)

    def pairset(self) -> PairSet:
        """The images (loaded, and aligned where needed, on first use); checked to be these pairs."""
        if self._pairset is None:
            ps = load_pairset(self.spec, limit=self.limit, align=self.align, places=self.places)
            if not (np.array_equal(ps.index1, self.index1) and np.array_equal(ps.index2, self.index2)
                    and np.array_equal(ps.issame, self.issame)):
                raise RuntimeError(f"{self.spec}: the loaded pairs differ from the pair list read without images")
            self._pairset = ps
        return self._pairset

    def digest(self) -> str:
        """sha1 of the pairs (both keys, label, fold): two runs on the same pairs share it."""
        h = hashlib.sha1()
        for a, b, s, f in zip(self.index1.tolist(), self.index2.tolist(), self.issame.tolist(), self.folds.tolist(),
                              strict=True):
            h.update(f"{self.keys[a]}\t{self.keys[b]}\t{int(s)}\t{f}\n".encode())
        return h.hexdigest()[:16]


def pair_list(spec: str, opts: Options) -> PairList:
    """The pairs of ``spec`` under ``opts`` (limit, folds, alignment); LFW-format lists without images."""
    if spec == "lfw" or spec.startswith("pairs:"):
        if spec == "lfw":
            root, pairs_file = opts.places.lfw, opts.places.lfw / "pairs.txt"
        else:
            parts = spec.split(":", 2)
            if len(parts) != 3:
                raise ValueError("use --data pairs:ROOT:PAIRS_FILE")
            root, pairs_file = Path(parts[1]), Path(parts[2])
        pairs = read_pairs(pairs_file)
        pairs = [pairs[i] for i in subsample(len(pairs), opts.limit)]
        uniq = unique_images(pairs)  # the order load_pairset's images follow
        where = {k: i for i, k in enumerate(uniq)}
        rels = [photo(root, n, i) for n, i in uniq]
        pl = PairList(spec, rels, [os.path.join(root, r) for r in rels],
                      [n for n, _ in uniq], np.array([where[(p.name1, p.idx1)] for p in pairs]),
                      np.array([where[(p.name2, p.idx2)] for p in pairs]), np.array([p.same for p in pairs]),
                      np.array([p.fold for p in pairs]), opts.align.value, opts.limit, opts.places)
    else:
        ps = load_pairset(spec, limit=opts.limit, align=opts.align.value, places=opts.places)
        keys = ["sha1:" + hashlib.sha1(im.tobytes()).hexdigest()[:20] for im in ps.images]
        pl = PairList(spec, keys, [f"{spec}#{i}" for i in range(len(keys))], [""] * len(keys), ps.index1,
                      ps.index2, ps.issame, ps.folds, opts.align.value, opts.limit, opts.places, ps)
    return refold(pl, spec, opts.folds)


def photo(root: Path, name: str, idx: int) -> str:
    """``Name/Name_NNNN.jpg`` under ``root`` (relative): one stat for a JPEG, else ``resolve_image``'s search."""
    rel = f"{name}/{image_name(name, idx)}.jpg"
    if os.path.isfile(os.path.join(root, rel)):
        return rel
    return resolve_image(root, name, idx).relative_to(root).as_posix()


def mask_kind(kind: str, seed: int) -> str:
    """The mask ``data.degrade.apply_mask(kind=kind, seed=seed)`` draws ("random" picks one by seed)."""
    if kind != "random":
        return kind
    return MASK_KINDS[int(np.random.default_rng(seed).integers(len(MASK_KINDS)))]


@dataclass
class FacePlan:
    """The faces a protocol scores: row f is image ``image[f]`` edited with seed ``seed[f]`` (-1: clean).

    Attributes:
        image: (F,) image index into the pair list.
        seed: (F,) edit seed, -1 for a clean face.
        edit: per face, what was done to it ("none", "mask N95", "blur 3").
        face1: (N,) face row of each pair's first face; face2 likewise.
        edited_side: "none" | "second" | "both".
    """

    image: np.ndarray
    seed: np.ndarray
    edit: list[str]
    face1: np.ndarray
    face2: np.ndarray
    edited_side: str


def protocol_edit(protocol: str, opts: Options) -> str:
    """The edit a protocol draws, as one word group ("none", "mask random", "downscale 3")."""
    if protocol.startswith("masked"):
        return f"mask {opts.mask}"
    if protocol == "cross-quality":
        return f"{opts.degrade} {opts.severity}"
    return "none"


def face_plan(pl: PairList, protocol: str, opts: Options) -> FacePlan:
    """The faces ``protocol`` scores on ``pl``: the clean faces it uses, then the edited ones."""
    side = EDITED[protocol]
    n = len(pl.issame)
    clean_of = {"none": np.r_[pl.index1, pl.index2], "second": pl.index1, "both": np.zeros(0, int)}[side]
    clean = np.unique(clean_of)  # (C,)
    row = np.full(len(pl.keys), -1)
    row[clean] = np.arange(len(clean))
    image, seed = [clean], [np.full(len(clean), -1)]
    face1, face2 = row[pl.index1], row[pl.index2]
    if side in ("second", "both"):
        image.append(pl.index2)
        seed.append(np.arange(n))
        face2 = len(clean) + np.arange(n)
    if side == "both":
        image.append(pl.index1)
        seed.append(n + np.arange(n))
        face1 = len(clean) + n + np.arange(n)
    seeds = np.concatenate(seed)
    word = protocol_edit(protocol, opts)
    edit = ["none" if s < 0 else f"mask {mask_kind(opts.mask, int(s) + 1)}" if protocol.startswith("masked")
            else word for s in seeds.tolist()]
    return FacePlan(np.concatenate(image), seeds, edit, face1, face2, side)
