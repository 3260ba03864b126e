"""Run tables at scale: query a 1,000,000-pair run, and re-score LFW from cached embeddings.

1. Writes a synthetic run (``cqa_core.evaluation.runs.synthetic``: the real layout, 1,000,000
   pairs over 100,000 faces) into a temporary folder and times, best of ``--repeats``, wall clock,
   each on a fresh DuckDB connection (``runs.tables.RunTables``, so opening is counted):

   * filter: count the errors of the lowest quality decile;
   * sort: those errors sorted by margin (worst first), every pair id fetched;
   * page: one page of 50 such rows, every column, at offset 500.

   Baseline: what a view would do without DuckDB, read ``pairs.parquet`` whole with pyarrow and
   filter / sort / slice it in numpy.

2. ``--lfw``: ``record_run`` on LFW View 2 (6000 pairs, 7701 faces, centre crop) with the bundled
   CQA-Face, once to fill an embedding cache in a temporary folder, then again from that cache (no
   image read): the second run's wall clock is the re-scoring time (pair list, cache, 10-fold
   protocol, tables, calibration).

    .venv/bin/python benchmarks/run_tables.py [--pairs 1000000] [--faces 100000] [--threads 2] [--lfw]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq

from cqa_core.evaluation.runs.synthetic import synthetic_run
from cqa_core.evaluation.runs.tables import RunTables

ERRORS_LOW = {"quality_decile": 1}


def best(fn: Callable[[], Any], repeats: int) -> tuple[float, Any]:
    """(best wall-clock seconds of ``repeats`` calls, the last result)."""
    times, out = [], None
    for _ in range(repeats):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return min(times), out


def with_duckdb(folder: Path, threads: int) -> dict[str, Callable[[], Any]]:
    return {
        "filter": lambda: RunTables(folder, threads).count(ERRORS_LOW, errors=True),
        "sort": lambda: RunTables(folder, threads).page(ERRORS_LOW, errors=True, limit=10**9,
                                                        columns=["pair_id"]).column(0).to_numpy(),
        "page": lambda: RunTables(folder, threads).page(ERRORS_LOW, errors=True, offset=500, limit=50).num_rows,
    }


def whole_table(folder: Path) -> dict[str, Callable[[], Any]]:
    def select() -> tuple[Any, np.ndarray]:
        t = pq.read_table(folder / "pairs.parquet")
        keep = (~t.column("correct").to_numpy()) & (t.column("quality_decile").to_numpy() == 1)
        return t, np.flatnonzero(keep)

    def ordered() -> tuple[Any, np.ndarray]:
        t, idx = select()
        m = t.column("correct_margin").to_numpy()[idx]
        return t, idx[np.lexsort((t.column("pair_id").to_numpy()[idx], m))]

    return {"filter": lambda: len(select()[1]),
            "sort": lambda: (lambda t, i: t.column("pair_id").to_numpy()[i])(*ordered()),
            "page": lambda: (lambda t, i: t.take(i[500:550]).num_rows)(*ordered())}


def tables_benchmark(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory(dir=args.tmp) as tmp:
        folder = Path(tmp) / "run"
        t = time.perf_counter()
        synthetic_run(folder, pairs=args.pairs, faces=args.faces)
        built = time.perf_counter() - t
        size = sum(f.stat().st_size for f in folder.iterdir()) / 2**20
        print(f"synthetic run: {args.pairs:,} pairs, {args.faces:,} faces, written in {built:.1f} s, {size:.1f} MiB")
        duck = {k: best(f, args.repeats) for k, f in with_duckdb(folder, args.threads).items()}
        base = {k: best(f, args.repeats) for k, f in whole_table(folder).items()}
        assert duck["filter"][1] == base["filter"][1] and (duck["sort"][1] == base["sort"][1]).all()
        n = duck["filter"][1]
        print(f"errors of the lowest quality decile: {n:,} of {args.pairs:,} pairs\n")
        print(f"| query ({args.threads} threads, best of {args.repeats}) | pyarrow whole table (baseline) s | "
              f"DuckDB s | x baseline |")
        print("|---|---:|---:|---:|")
        for k, what in (("filter", "filter to the errors of the lowest quality decile (count)"),
                        ("sort", "those errors sorted by margin, all pair ids"),
                        ("page", "one page of 50 rows, all columns, offset 500")):
            print(f"| {what} | {base[k][0]:.3f} | {duck[k][0]:.3f} | {duck[k][0] / base[k][0]:.2f} |")


def lfw_benchmark(args: argparse.Namespace) -> None:
    import torch

    from cqa_core.evaluation.protocols import Options
    from cqa_core.evaluation.runs.embcache import EmbeddingCache
    from cqa_core.evaluation.runs.record import record_run
    from cqa_core.recognizers.load import load_recognizer
    from cqa_core.settings import AlignMode

    torch.set_num_threads(args.threads)
    rec = load_recognizer("default")
    opts = Options(align=AlignMode.CENTER, limit=args.lfw_limit)
    with tempfile.TemporaryDirectory(dir=args.tmp) as tmp:
        cache = EmbeddingCache(Path(tmp) / "cache")
        rows = []
        for what in ("first run: every face scored (baseline)", "rerun from the embedding cache"):
            t = time.perf_counter()
            result, _ = record_run(rec, "lfw", "verify", opts, Path(tmp) / "run", cache=cache, progress=False)
            rows.append((what, time.perf_counter() - t, result))
        print(f"\nLFW View 2 ({rows[0][2]['n_pairs']} pairs, {rows[0][2]['images']} faces, centre crop), "
              f"{rec.name}, {args.threads} threads, accuracy {100 * rows[0][2]['accuracy']:.2f}% both times\n")
        assert rows[0][2]["accuracy"] == rows[1][2]["accuracy"]
        print("| record_run | wall s | x baseline |\n|---|---:|---:|")
        for what, s, _ in rows:
            print(f"| {what} | {s:.2f} | {s / rows[0][1]:.3f} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--pairs", type=int, default=1_000_000)
    ap.add_argument("--faces", type=int, default=100_000)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--tmp", default=None, help="folder for the temporary run (default: the system's)")
    ap.add_argument("--lfw", action="store_true", help="also time re-scoring LFW from cached embeddings")
    ap.add_argument("--lfw-limit", type=int, default=None, help="LFW pairs (default all 6000)")
    ap.add_argument("--skip-tables", action="store_true", help="only the LFW part")
    args = ap.parse_args()
    if not args.skip_tables:
        tables_benchmark(args)
    if args.lfw:
        lfw_benchmark(args)


if __name__ == "__main__":
    main()
