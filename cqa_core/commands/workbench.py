"""``cqa workbench``: serve the Voila dashboard (``workbench/dashboard/dashboard.ipynb``) on the default model.

    cqa workbench [--faces DIR] [--port 8866] [--checkpoint PATH]     # service + Voila, prints the URL
    cqa workbench --service http://gpu-box:8867                       # the model runs elsewhere
    cqa workbench --terminal [IMAGE]                                  # the terminal demo

The terminal demo runs CQA-Face on one photo and prints each branch's attention map (as
characters), its QAN quality score, and the CAL penalty between branches.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

SHADES = " .:-=+*#%@"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("workbench", help="serve the Voila dashboard (or --terminal: explain one face in text)")
    p.add_argument("image", nargs="?", help="--terminal only: a face photo (default: the first face under --faces)")
    p.add_argument("--faces", default=os.environ.get("CQA_FACES"), help="gallery folder (env CQA_FACES)")
    p.add_argument("--checkpoint", default=os.environ.get("CQA_CHECKPOINT"), help="model weights (env CQA_CHECKPOINT)")
    p.add_argument("--port", type=int, default=8866, help="Voila port (default 8866)")
    p.add_argument("--pool", type=int, default=None,
                   help="preheated viewer kernels kept ready (default 10, voila.json; ~130 MB each)")
    p.add_argument("--no-preheat", dest="preheat", action="store_false",
                   help="start each visitor's kernel on request (slower first page, no idle kernel)")
    p.add_argument("--service", default=os.environ.get("CQA_ANALYSIS_URL"),
                   help="URL of an analysis service running elsewhere, e.g. on a GPU box (env CQA_ANALYSIS_URL; "
                   "default: start one here)")
    p.add_argument("--service-port", type=int, default=None, help="port of the analysis service it starts (default: a free one)")
    p.add_argument("--terminal", action="store_true", help="print one face's explanation instead of serving")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Serve the dashboard, or run the terminal demo with --terminal."""
    if args.terminal:
        return run_terminal(args)
    if args.image:
        raise ValueError("IMAGE is for the terminal demo: cqa workbench --terminal IMAGE")
    from workbench.serve import serve

    return serve(port=args.port, faces=args.faces, checkpoint=args.checkpoint, debug=getattr(args, "debug", False),
                 preheat=args.preheat, service_url=args.service,
                 service_port=args.service_port, pool=args.pool)


def find_face(args: argparse.Namespace) -> Path:
    if args.image:
        return Path(args.image)
    from cqa_core.data import shared_data_dir

    roots = [Path(args.faces)] if args.faces else [shared_data_dir() / "lfw-deepfunneled"]
    for root in roots:
        if root.is_dir():
            found = sorted(p for p in root.rglob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
            if found:
                return found[0]
    raise FileNotFoundError("no face given and none found: pass IMAGE, --faces DIR or set CQA_FACES")


def load_face(path: Path):
    """Photo -> (1, 3, 112, 112) model input by a centre crop (alignment comes with the data layer)."""
    import numpy as np
    from PIL import Image

    from cqa_core.preprocess import to_tensor

    with Image.open(path) as im:
        im = im.convert("RGB")
        side = min(im.size)
        left, top = (im.width - side) // 2, (im.height - side) // 2
        # LFW-style framing: the face fills the central ~45% of a 250 px photo
        crop = int(side * 0.45) if side >= 200 else side
        box = (left + (side - crop) // 2, top + (side - crop) // 2)
        im = im.crop((*box, box[0] + crop, box[1] + crop)).resize((112, 112), Image.BILINEAR)
        return to_tensor(np.asarray(im))


def load(checkpoint: str | None):
    from cqa_core.model import resolve_model

    model, label, untrained = resolve_model(checkpoint, allow_untrained=True)
    if untrained:
        print("note: no trained default model is installed; showing an UNTRAINED light model")
    return model, label


def ascii_map(m) -> list[str]:
    lo, hi = float(m.min()), float(m.max())
    scale = (len(SHADES) - 1) / max(hi - lo, 1e-8)
    return ["".join(SHADES[int((v - lo) * scale)] * 2 for v in row) for row in m.tolist()]


def run_terminal(args: argparse.Namespace) -> int:
    """The terminal demo: one face's branch maps, quality scores and CAL penalties."""
    import torch

    from cqa_core.losses import cal_loss

    path = find_face(args)
    model, what = load(args.checkpoint)
    with torch.no_grad():
        out = model(load_face(path))
    maps = out.attention_maps[0]  # (b, 7, 7)
    b = maps.shape[0]
    print(f"face: {path}\nmodel: {what}, stem {model.config.stem}, b={b}")
    print(f"embedding norm {out.embedding[0].norm():.3f}")
    blocks = [ascii_map(maps[i]) for i in range(b)]
    print("   ".join(f"branch {i} q={out.quality[0, i]:.2f}".ljust(14) for i in range(b)))
    for r in range(maps.shape[1]):
        print("   ".join(block[r].ljust(14) for block in blocks))
    print("CAL penalty per branch pair (Eq. 2, 0 = diverse, 0.8 = identical):")
    for i in range(b):
        cells = [f"{cal_loss(maps[[i, j]][None]).item():5.2f}" if i != j else "    -" for j in range(b)]
        print("  " + " ".join(cells))
    return 0
