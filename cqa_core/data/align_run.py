"""Align a whole folder of photos: resumable, multi-process, never dies on one bad file.

Layout written under ``dst``:

* the 112 x 112 crops, at the same relative path as their source (``Name/Name_0001.jpg``;
  JPEG quality 95; sources in other formats keep their suffix when it is jpg/png/bmp, else .png);
* ``alignment.csv`` - one row per crop: ``path, out, method, score, src_w, src_h``, the five
  landmarks ``lm0_x .. lm4_y`` in photo pixels (empty for the fallback) and the 2 x 3 affine
  ``a00 a01 a02 a10 a11 a12`` (photo -> aligned; invert it to warp maps back);
* ``misses.csv`` - ``path, action, reason`` for every photo without a detected face
  (``action`` = ``center`` when the fallback crop was written, ``skipped`` when not) and every
  unreadable file (``action`` = ``error``, with the :class:`ImageError` message).

Reusing landmarks: ``landmarks_from`` names an earlier run's ``alignment.csv`` (for example
the cache of a previous :data:`~cqa_core.data.align.ALIGN_VERSION`). Photos with a row there are
warped from the stored landmarks with the current fit instead of running MTCNN again (detection
is ~95 % of the cost and deterministic); photos without a row are detected as usual.

Resuming: a photo is skipped when ``alignment.csv`` has its row and its crop exists, or when
``misses.csv`` lists it as skipped / error. Rows are appended as work finishes, and crops are
written to a temporary name then renamed, so an interrupted run leaves no half files.
"""

from __future__ import annotations

import csv
import json
import multiprocessing as mp
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from cqa_core.data.align import (
    ALIGN_VERSION,
    AlignedFace,
    ImageError,
    NoFaceError,
    align_image,
    center_affine,
    fit_template,
    load_image,
    warp,
)
from cqa_core.data.imageio import is_image_file

ALIGN_FIELDS = (
    ["path", "out", "method", "score", "src_w", "src_h"]
    + [f"lm{i}_{c}" for i in range(5) for c in "xy"]
    + ["a00", "a01", "a02", "a10", "a11", "a12"]
)
MISS_FIELDS = ["path", "action", "reason"]
_OUT_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")


def list_images(src: Path) -> list[str]:
    """Relative POSIX paths of every image file under ``src``, sorted."""
    out = []
    for dirpath, dirnames, filenames in os.walk(src):
        dirnames.sort()
        for f in filenames:
            if is_image_file(f) and not f.startswith("."):
                out.append(Path(dirpath, f).relative_to(src).as_posix())
    return sorted(out)


def out_name(rel: str) -> str:
    """The crop's relative path for a source's relative path."""
    p = Path(rel)
    return rel if p.suffix.lower() in _OUT_SUFFIXES else p.with_suffix(".png").as_posix()


def _read_csv(path: Path) -> list[dict[str, str]]:
    if not path.exists():
        return []
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def mtcnn_rows(root: Path) -> list[tuple[dict[str, str], Path]]:
    """An aligned folder's ``alignment.csv`` rows that MTCNN aligned, each with its source photo
    (the folder's ``.complete.json`` names the source folder). [] without the table or marker."""
    marker = root / ".complete.json"
    src = json.loads(marker.read_text()).get("src") if marker.exists() else None
    if src is None:
        return []
    return [(r, Path(src) / r["path"]) for r in _read_csv(root / "alignment.csv") if r["method"] == "mtcnn"]


def _write_csv(path: Path, fields: list[str], rows: list[dict[str, Any]]) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields)
        w.writeheader()
        w.writerows(rows)
    os.replace(tmp, path)


def _worker_init() -> None:
    torch.set_num_threads(1)


def align_one(src: str, dst: str, rel: str, fallback: str | None,
              known: dict[str, str] | None = None) -> tuple[str, dict[str, Any]]:
    """Align one file; returns ("ok", alignment row) or ("miss", misses row). Never raises.

    ``known`` is this photo's row from an earlier ``alignment.csv``: its landmarks are reused.
    """
    try:
        return _align_one(src, dst, rel, fallback, known)
    except Exception as exc:  # a folder run must never die on one file
        return "miss", {"path": rel, "action": "error", "reason": f"{type(exc).__name__}: {exc}"}


def refit(img: Any, known: dict[str, str]) -> Any:
    """Re-warp a photo from an ``alignment.csv`` row's landmarks with the current fit."""
    h, w = img.shape[:2]
    if known["method"] == "mtcnn":
        pts = np.array([[float(known[f"lm{i}_{c}"]) for c in "xy"] for i in range(5)])  # (5, 2)
        m = fit_template(pts)  # (2, 3)
        return AlignedFace(warp(img, m), m, pts.astype(np.float32), (w, h), "mtcnn", float(known["score"]))
    if known["method"] == "center":
        m = center_affine(w, h)
        return AlignedFace(warp(img, m), m, None, (w, h), "center", 0.0)
    return align_image(img)  # "identity": a 112 x 112 input, no detection runs


def _align_one(src: str, dst: str, rel: str, fallback: str | None,
               known: dict[str, str] | None) -> tuple[str, dict[str, Any]]:
    try:
        img = load_image(Path(src, rel))
        try:
            face = refit(img, known) if known else align_image(img, fallback=fallback)
        except NoFaceError:
            return "miss", {"path": rel, "action": "skipped", "reason": "no face detected"}
    except (ImageError, OSError) as exc:
        return "miss", {"path": rel, "action": "error", "reason": f"{type(exc).__name__}: {exc}"}
    out = out_name(rel)
    target = Path(dst, out)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")  # unique per process
    fmt = {".jpg": "JPEG", ".jpeg": "JPEG", ".png": "PNG", ".bmp": "BMP"}[target.suffix.lower()]
    Image.fromarray(face.image).save(tmp, format=fmt, **({"quality": 95} if fmt == "JPEG" else {}))
    os.replace(tmp, target)
    return "ok", face_row(face, rel, out)


def face_row(face: Any, rel: str, out: str) -> dict[str, Any]:
    """An ``alignment.csv`` row (:data:`ALIGN_FIELDS`) for an ``AlignedFace``."""
    row: dict[str, Any] = {"path": rel, "out": out, "method": face.method, "score": f"{face.score:.5f}",
                           "src_w": face.source_size[0], "src_h": face.source_size[1]}
    lm = face.landmarks
    for i in range(5):
        for j, c in enumerate("xy"):
            row[f"lm{i}_{c}"] = "" if lm is None else f"{float(lm[i, j]):.3f}"
    for k, v in zip(ALIGN_FIELDS[-6:], face.affine.reshape(-1), strict=True):
        row[k] = f"{float(v):.8g}"
    return row


def _align_star(job: tuple[str, str, str, str | None, dict[str, str] | None]) -> tuple[str, dict[str, Any]]:
    return align_one(*job)


def align_folder(
    src: str | os.PathLike,
    dst: str | os.PathLike,
    fallback: str | None = "center",
    workers: int = 2,
    limit: int | None = None,
    progress: bool = True,
    landmarks_from: str | os.PathLike | None = None,
) -> dict[str, Any]:
    """Align every image under ``src`` into ``dst`` (see the module docstring for the layout).

    Args:
        src: folder of photos (any depth; identity folders are kept).
        dst: output folder, created if needed.
        fallback: "center" writes a fixed centre crop when no face is found; None skips the photo.
        workers: processes, each with one torch thread and its own MTCNN (1 = in this process).
        limit: align only the first ``limit`` photos (sorted order), for tests and benchmarks.
        progress: show a tqdm bar.
        landmarks_from: an earlier ``alignment.csv`` whose landmarks are reused (module docstring).

    Returns:
        Summary dict: total, done_before, aligned (this run), by method counts, misses, errors,
        seconds and faces_per_s (this run), and the CSV paths.
    """
    src, dst = Path(src), Path(dst)
    if not src.is_dir():
        raise FileNotFoundError(f"source folder not found: {src}")
    dst.mkdir(parents=True, exist_ok=True)
    rels = list_images(src)[: limit if limit else None]
    align_csv, miss_csv = dst / "alignment.csv", dst / "misses.csv"
    rows = {r["path"]: r for r in _read_csv(align_csv) if (dst / r["out"]).exists()}
    misses = {r["path"]: r for r in _read_csv(miss_csv)}
    done = set(rows) | {p for p, r in misses.items() if r["action"] in ("skipped", "error")}
    todo = [r for r in rels if r not in done]
    # Keep the fresh CSVs consistent with what is on disk, then append as we go.
    _write_csv(align_csv, ALIGN_FIELDS, list(rows.values()))
    misses = {p: r for p, r in misses.items() if p in done or p in rows}
    _write_csv(miss_csv, MISS_FIELDS, list(misses.values()))
    known = {r["path"]: r for r in _read_csv(Path(landmarks_from))} if landmarks_from else {}
    if landmarks_from and not known:
        raise FileNotFoundError(f"no alignment rows to reuse in {landmarks_from}")
    jobs = [(str(src), str(dst), r, fallback, known.get(r)) for r in todo]
    t0 = time.perf_counter()
    n_new = 0
    with open(align_csv, "a", newline="") as fa, open(miss_csv, "a", newline="") as fm:
        wa, wm = csv.DictWriter(fa, ALIGN_FIELDS), csv.DictWriter(fm, MISS_FIELDS)
        bar = tqdm(total=len(jobs), desc=f"align {src.name}", unit="img", disable=not progress)
        threads = None
        if workers <= 1 or len(jobs) < 8:
            threads = torch.get_num_threads()  # restored below: callers keep their setting
            torch.set_num_threads(1)
            results = map(_align_star, jobs)
            pool = None
        else:
            pool = mp.get_context("spawn").Pool(workers, initializer=_worker_init)
            results = pool.imap_unordered(_align_star, jobs, chunksize=8)
        try:
            for kind, row in results:
                if kind == "ok":
                    rows[row["path"]] = row
                    wa.writerow(row)
                    n_new += 1
                    if row["method"] == "center":
                        mrow = {"path": row["path"], "action": "center", "reason": "no face detected"}
                        misses[row["path"]] = mrow
                        wm.writerow(mrow)
                else:
                    misses[row["path"]] = row
                    wm.writerow(row)
                bar.update(1)
        finally:
            bar.close()
            if pool is not None:
                pool.terminate()
            if threads is not None:
                torch.set_num_threads(threads)
    seconds = time.perf_counter() - t0
    _write_csv(align_csv, ALIGN_FIELDS, sorted(rows.values(), key=lambda r: r["path"]))
    _write_csv(miss_csv, MISS_FIELDS, sorted(misses.values(), key=lambda r: r["path"]))
    methods: dict[str, int] = {}
    for r in rows.values():
        methods[r["method"]] = methods.get(r["method"], 0) + 1
    actions = [r["action"] for r in misses.values()]

    return {
        "src": str(src), "dst": str(dst), "align_version": ALIGN_VERSION, "total": len(rels), "done_before": len(rels) - len(todo),
        "aligned_this_run": n_new, "landmarks_reused": sum(j[4] is not None for j in jobs), "methods": methods, "no_face": actions.count("center") + actions.count("skipped"),
        "errors": actions.count("error"), "seconds": round(seconds, 2),
        "faces_per_s": round(len(jobs) / seconds, 2) if jobs and seconds > 0 else None,
        "alignment_csv": str(align_csv), "misses_csv": str(miss_csv),
    }
