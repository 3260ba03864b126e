"""``cqa explain IMAGE [OTHER] --out DIR [--model SPEC]``: overlay PNGs and a JSON of the numbers.

``--model`` takes any recognizer (``cqa_core.recognizers.load``: a CQA-Face checkpoint, an insightface
``.pth``, an ``.onnx``, ``dlib``, a plug-in's name; ``--checkpoint`` is its old name); without it the
model is ``$CQA_CHECKPOINT`` or the bundled CQA-Face, as for ``cqa eval`` and ``cqa workbench``. ``--methods`` takes the names of the
explanation registry (``cqa explain --list-methods``).

Writes overlay PNGs and ``analysis.json`` into DIR (``cqa_core.explain.report`` lists them). A photo
in which MTCNN finds no face is refused with the dashboard's line (``data.align.no_face_note``) and
exit code 3 (:data:`NO_FACE_EXIT`), nothing written: no face, no verdict. ``--no-face-ok`` analyses
the centre of the photo anyway, printing the same line first.
"""

from __future__ import annotations

import argparse
import sys

from tqdm import tqdm

from cqa_core.commands.common import add_model_argument
from cqa_core.data.align import no_face_note

NO_FACE_EXIT = 3
"""The exit code of ``cqa explain`` on a photo with no face found (without ``--no-face-ok``)."""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("explain", help="explain one face or why two faces match (PNGs + JSON)")
    p.add_argument("image", nargs="?", help="photo or aligned 112x112 face")
    p.add_argument("other", nargs="?", default=None, help="optional second face: explain the pair")
    add_model_argument(p)
    p.add_argument("--layer", default=None, help="Grad-CAM layer of a .pth / .onnx model (default: found automatically)")
    p.add_argument("--out", default=None, help="output directory (created; needed with IMAGE)")
    p.add_argument("--methods", default=None,
                   help="comma-separated pair maps (default: gradcam for white-box models, occlusion for black-box "
                   "ones); `cqa explain --list-methods` lists them with what each needs")
    p.add_argument("--list-methods", action="store_true", help="list the explanation methods and exit")
    p.add_argument("--alpha", type=float, default=0.5, help="heatmap opacity in the overlays (default 0.5)")
    p.add_argument("--device", default="cpu", help="torch device (default cpu)")
    p.add_argument("--reference", default=None, metavar="RUN_DIR",
                   help="a run of this model (cqa eval --out): print the verdict with its calibrated probability")
    p.add_argument("--sheet", default=None, metavar="HTML",
                   help="with OTHER: write a one-page case sheet (self-contained HTML; a PDF beside it when "
                   "headless Chromium is installed)")
    p.add_argument("--per-map", action="store_true",
                   help="scale each map to its own range (default: a pair's two maps share one scale, a face's "
                   "branch maps another)")
    p.add_argument("--no-face-ok", action="store_true",
                   help="analyse the centre of a photo in which no face is found (default: refuse it, exit code 3)")
    p.set_defaults(func=run)


def progress_bar(methods: tuple[str, ...]):
    """A tqdm bar for the perturbation methods' embeddings (their ``progress(done, total)``)."""
    bar = None

    def update(done: int, total: int) -> None:
        nonlocal bar
        if bar is None or bar.total != total or done < bar.n:
            bar = tqdm(total=total, desc="embeddings", unit="img", leave=False)
        bar.update(done - bar.n)

    return update if methods else None


def run(args: argparse.Namespace) -> int:
    # imported when the command runs, so `cqa --help` and the other commands never load torch
    from cqa_core.commands import explain_case
    from cqa_core.explain import methods as registry
    from cqa_core.explain.analysis import analyse
    from cqa_core.explain.report import write_report
    from cqa_core.recognizers.load import load_recognizer

    if args.list_methods:
        for m in registry.methods().values():
            print(f"  {m.name:<20} needs {m.needs.value:<10} {m.about}")
            if m.caveat:
                print(f"  {'':<20} caveat: {m.caveat}")
        return 0
    if not args.image or not args.out:
        raise ValueError("give IMAGE (and OTHER to explain a pair) and --out DIR, or --list-methods")
    if args.sheet and not args.other:
        raise ValueError("--sheet explains a pair: give OTHER too")
    rec = load_recognizer(args.model, args.device, checkpoint=args.settings.checkpoint, layer=args.layer)
    default = "gradcam" if rec.whitebox else "occlusion"
    methods = tuple(m.strip() for m in (args.methods or default).split(",") if m.strip()) if args.other else ()
    for name in methods:  # a measured warning (maps that survive model randomisation), one line each
        if name in registry.methods() and registry.get(name).caveat:
            print(f"caveat: {name} {registry.get(name).caveat}", file=sys.stderr)
    result = analyse(rec, args.image, args.other, methods=methods, progress=progress_bar(methods))
    faces = (result.a, result.b) if args.other else (result,)
    notes = [n for n in (no_face_note(str(name), face.align_method)
                         for name, face in zip((args.image, args.other), faces, strict=False)) if n]
    if notes and not args.no_face_ok:  # no face, no verdict: one line, nothing written
        print(f"{notes[0]}; nothing written (--no-face-ok analyses the centre anyway)", file=sys.stderr)
        return NO_FACE_EXIT
    for note in notes:
        print(note)
    files = write_report(result, args.out, rec.name, args.image, args.other, args.alpha, kinds=explain_case.map_kinds(),
                         normalisation=explain_case.normalisation(args))
    label = rec.name
    line = f"{label}: wrote {len(files) - 1} PNGs and analysis.json to {args.out}"
    if args.other:
        line += f"; similarity {result.similarity:.4f}"
    print(line)
    if args.other:  # the verdict at the model's own threshold (and calibrated), the maps' checks, the sheet
        explain_case.report_pair(args, rec, result)
    return 0
