"""``cqa align SRC DST``: detect (MTCNN), warp onto the 112 x 112 ArcFace template, write crops."""

from __future__ import annotations

import argparse
import json


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "align",
        help="align a folder of photos to 112x112 (MTCNN + similarity warp); resumable",
        description="Writes crops at the same relative paths, plus alignment.csv (landmarks, "
        "affine photo->aligned) and misses.csv (no face / unreadable files) in DST.",
    )
    p.add_argument("src", help="folder of photos (e.g. Name/Name_0001.jpg)")
    p.add_argument("dst", help="output folder (created; existing crops are kept and skipped)")
    p.add_argument("--fallback", choices=("center", "none"), default="center",
                   help="no face: write the fixed LFW-style centre crop (default) or skip the photo")
    p.add_argument("--workers", type=int, default=2, help="processes, one torch thread each (default 2)")
    p.add_argument("--limit", type=int, default=None, help="only the first N photos (sorted)")
    p.add_argument("--landmarks-from", default=None, metavar="CSV",
                   help="an earlier run's alignment.csv: re-warp its photos from the stored landmarks "
                   "with the current fit instead of detecting again")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    # imported when the command runs, so `cqa --help` and the other commands never load torch
    from cqa_core.data.align_run import align_folder

    summary = align_folder(args.src, args.dst, fallback=None if args.fallback == "none" else args.fallback,
                           workers=args.workers, limit=args.limit, landmarks_from=args.landmarks_from)
    if args.json:
        print(json.dumps(summary, indent=2))
        return 0
    print(f"{summary['total']} photos, {summary['done_before']} already done, "
          f"{summary['aligned_this_run']} aligned now ({summary['faces_per_s']} faces/s)")
    print(f"methods: {summary['methods']}; no face: {summary['no_face']}; unreadable: {summary['errors']}")
    print(f"csv: {summary['alignment_csv']}  misses: {summary['misses_csv']}")
    return 0
