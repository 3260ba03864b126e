"""``cqa workbench``: serve the Voila dashboard on the default model (or explain one face in text).

    cqa workbench [--faces DIR] [--port 8866] [--model PATH]       # service + Voila, prints the URL
    cqa workbench --host 0.0.0.0 [--base-url /cqa/] [--token T]       # a lab opens it (with the token)
    CQA_SERVICE_TOKEN=T cqa workbench --service http://gpu-box:8867   # the model runs elsewhere
    cqa workbench --terminal [IMAGE]                                  # the terminal demo

The workbench package contributes this command to ``cqa`` through the entry point
``[project.entry-points."cqa.commands"]``, so ``cqa_core`` never imports the workbench. The
terminal demo analyses one photo exactly as the dashboard does (``cqa_core.explain.analyse`` with
the gallery's alignment) and prints each branch's attention map as characters, its QAN quality
score and the CAL penalty between branches.
"""

from __future__ import annotations

import argparse

import numpy as np

from cqa_core.commands.common import add_model_argument
from cqa_core.settings import AlignMode
from workbench.access import KERNELS_PER_CLIENT, LOGIN_DAYS, Access

SHADES = " .:-=+*#%@"
GRID = 14
"""The terminal map's side in characters (the 112 x 112 map sampled every 8 pixels)."""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("workbench", help="serve the Voila dashboard (or --terminal: explain one face in text)")
    p.add_argument("image", nargs="?", help="--terminal only: a face photo (default: the first gallery face)")
    p.add_argument("--faces", default=None, help="gallery folder (env CQA_FACES; default: LFW people with two photos each)")
    p.add_argument("--people", type=int, default=None, help="gallery size (env CQA_GALLERY_PEOPLE; default 60)")
    p.add_argument("--align", choices=[m.value for m in AlignMode], default=None,
                   help="gallery alignment: mtcnn (default) or center for LFW-framed photos (env CQA_ALIGN)")
    add_model_argument(p, "the CQA-Face served: a .safetensors checkpoint or run folder (env CQA_CHECKPOINT; "
                       "default: the bundled model)")
    p.add_argument("--port", type=int, default=8866, help="Voila port (default 8866)")
    p.add_argument("--pool", type=int, default=None,
                   help="preheated viewer kernels kept ready (default 10, voila.json; ~130 MB each)")
    p.add_argument("--refill-after", type=float, default=None, metavar="SECONDS",
                   help="start a used pool kernel's replacement this long after (default 60, voila.json); "
                   "a visitor finding the pool empty meanwhile gets a kernel of its own at once")
    p.add_argument("--no-preheat", dest="preheat", action="store_false",
                   help="start each visitor's kernel on request (slower first page, no idle kernel)")
    p.add_argument("--service", dest="service_url", default=None,
                   help="URL of an analysis service running elsewhere, e.g. on a GPU box (env CQA_ANALYSIS_URL; "
                   "default: start one here)")
    p.add_argument("--service-port", type=int, default=None, help="port of the analysis service it starts (default: a free one)")
    p.add_argument("--models", default=None, help="folder of model files viewers may load besides the served model "
                   "and dlib (env CQA_MODELS; default: none); on loopback with a login and no --base-url, only "
                   "its owner can open the dashboard and any model path may be typed")
    p.add_argument("--runs", default=None, help="folder of benchmark runs (cqa eval --out) the Benchmark tab lists "
                   "(env CQA_RUNS; default: runs/ in the cache, CQA_CACHE)")
    p.add_argument("--host", default="127.0.0.1", help="address Voila listens on (default 127.0.0.1: this machine "
                   "only; 0.0.0.0: every interface, a token or password required)")
    p.add_argument("--base-url", default="/", help="path prefix of every page, e.g. /cqa/ behind a proxy (default /)")
    p.add_argument("--token", default=None, help="login token (env CQA_TOKEN, which keeps it out of `ps`; "
                   "default: one made at start, printed in the URL)")
    p.add_argument("--password-hash", default=None, help="log in with a password instead: a hash from "
                   "python -c 'from jupyter_server.auth import passwd; print(passwd())'")
    p.add_argument("--no-auth", action="store_true", help="no login at all (accepted only on a loopback --host; "
                   "only loopback Host names are answered)")
    p.add_argument("--login-days", type=float, default=LOGIN_DAYS, help=f"days a login lasts before the token is "
                   f"asked again (default {LOGIN_DAYS:g})")
    p.add_argument("--kernels-per-client", type=int, default=KERNELS_PER_CLIENT, help="dashboards (kernels) one "
                   f"client address may hold at once (default {KERNELS_PER_CLIENT}; behind the proxy, per visitor)")
    p.add_argument("--terminal", action="store_true", help="print one face's explanation instead of serving")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Serve the dashboard, or run the terminal demo with --terminal."""
    settings = args.settings.replace(checkpoint=args.model, people=args.people, align=args.align, service_url=args.service_url,
                                     debug=args.debug or None, token=args.token, models_dir=args.models,
                                     runs=args.runs)
    settings = settings.replace(runs=settings.runs_dir)  # the kernels get the folder itself (no cache root)
    if args.terminal:
        return run_terminal(settings, args.image)
    if args.image:
        raise ValueError("IMAGE is for the terminal demo: cqa workbench --terminal IMAGE")
    from workbench.serve import serve  # Voila's command line: only when serving

    access = Access.choose(args.host, args.base_url, settings.token, args.password_hash, args.no_auth,
                           args.login_days, args.kernels_per_client)
    return serve(settings, port=args.port, preheat=args.preheat, service_port=args.service_port, pool=args.pool,
                 access=access, refill_after=args.refill_after)


def ascii_map(m: np.ndarray) -> list[str]:
    lo, hi = float(m.min()), float(m.max())
    scale = (len(SHADES) - 1) / max(hi - lo, 1e-8)
    return ["".join(SHADES[int((v - lo) * scale)] * 2 for v in row) for row in m.tolist()]


def run_terminal(settings, image: str | None) -> int:
    """The terminal demo: one face's branch maps, quality scores and CAL penalties."""
    from cqa_core.checkpoint import resolve_model  # torch: only the demo runs a model here
    from cqa_core.data.align import detector_for, no_face_note
    from cqa_core.explain.analysis import analyse
    from workbench.gallery import gallery_align, gallery_faces

    if image:
        face_path, align = image, gallery_align(image, settings.align)
    else:
        faces = gallery_faces(settings.replace(people=1))
        if not faces:
            raise FileNotFoundError("no face given and none found: pass IMAGE, --faces DIR or set CQA_FACES")
        face_path, align = faces[0].source, faces[0].align
    model, label, untrained = resolve_model(settings.checkpoint, allow_untrained=True)
    if untrained:
        print("note: no trained default model is installed; showing an UNTRAINED light model")
    fa = analyse(model, face_path, detector=detector_for(align), methods=())
    br = fa.branches
    step = br.attention.shape[-1] // GRID
    b = br.count
    print(f"face: {face_path} (aligned by {fa.align_method})\nmodel: {label}, stem {model.config.stem}, b={b}")
    note = no_face_note(str(face_path), fa.align_method, align)
    if note:
        print(note)
    print(f"embedding norm {fa.embedding_norm:.3f}")
    blocks = [ascii_map(br.attention[i, step // 2::step, step // 2::step]) for i in range(b)]
    width = 2 * GRID
    print("   ".join(f"branch {i} q={br.quality[i]:.2f}".ljust(width) for i in range(b)))
    for r in range(GRID):
        print("   ".join(block[r].ljust(width) for block in blocks))
    print("CAL penalty per branch pair (Eq. 2, 0 = diverse, 0.8 = identical):")
    for i in range(b):
        print("  " + " ".join(f"{br.cal_matrix[i, j]:5.2f}" if i != j else "    -" for j in range(b)))
    return 0
