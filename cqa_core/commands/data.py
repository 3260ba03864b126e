"""``cqa data fetch lfw`` (download + checksum + extract) and ``cqa data pack`` (RecordIO)."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("data", help="download datasets (fetch lfw) or pack a face folder as RecordIO")
    dsub = p.add_subparsers(dest="data_command", required=True, metavar="ACTION")
    f = dsub.add_parser("fetch", help="download a public dataset with checksums (resumable)")
    f.add_argument("dataset", choices=("lfw",), help="lfw = LFW deep-funneled + pairs lists")
    f.add_argument("--dest", default=None, help="target folder (default: $CQA_CACHE/raw)")
    f.add_argument("--base-url", default=None, help="mirror URL prefix (default: $CQA_LFW_URL or the official site)")
    f.add_argument("--align", action="store_true", help="also align it into the cache afterwards")
    f.set_defaults(func=run_fetch)
    k = dsub.add_parser("pack", help="pack an aligned identity folder into insightface .rec/.idx")
    k.add_argument("src", help="aligned folder Identity/img.jpg")
    k.add_argument("prefix", help="output path prefix (writes PREFIX.rec and PREFIX.idx)")
    k.set_defaults(func=run_pack)


def run_fetch(args: argparse.Namespace) -> int:
    # imported when the command runs, so `cqa --help` and the other commands never load torch
    from cqa_core.data.datasets import ensure_aligned
    from cqa_core.data.fetch import fetch_lfw

    places = args.settings
    out = fetch_lfw(args.dest, base_url=args.base_url or places.lfw_url, cache_root=places.cache_root)
    print(f"LFW ready at {out}")
    if args.align:
        print(f"aligned into {ensure_aligned(out, cache_root=places.cache_root)}")
    return 0


def run_pack(args: argparse.Namespace) -> int:
    # imported when the command runs, so `cqa --help` and the other commands never load torch
    from cqa_core.data.recordio import write_face_folder

    n = write_face_folder(args.src, args.prefix)
    print(f"packed {n} images into {args.prefix}.rec / .idx")
    return 0
