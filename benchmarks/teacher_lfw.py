"""The distillation teacher on LFW View 2: how far is the student from what it learns from?

    .venv/bin/python benchmarks/teacher_lfw.py [--teacher dlib] [--limit N] [--json out.json]

The teacher embeds every image of LFW's ``pairs.txt`` exactly as ``cqa distill-targets`` embeds
a training photo (``training.distill``: dlib gets its own 150 x 150 chip, cut from the original
photo by its 5-point shape predictor inside a box around our MTCNN landmarks from the aligned
LFW cache; the one photo MTCNN missed is read from its centre crop). Scores are printed with the
same 10-fold protocol as ``cqa eval --protocol verify`` (``evaluate.evaluate_scores``), for
dlib's own metric (minus the Euclidean distance of raw descriptors) and for the cosine of
descriptors centred on their mean over the set (what the student is trained on; the training
set's mean is not used here, so this row is for orientation).
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--teacher", default="dlib", help="dlib | PATH.safetensors | PATH.onnx (default dlib)")
    p.add_argument("--limit", type=int, default=None, help="use N pairs, spread evenly")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--json", default=None, help="write the result here")
    args = p.parse_args(argv)

    from tqdm import tqdm

    from cqa_core.data.datasets import ensure_aligned
    from cqa_core.data.imageio import load_image
    from cqa_core.data.pairs import read_pairs, resolve_image, unique_images
    from cqa_core.data.verification import subsample
    from cqa_core.metrics import evaluate_scores, l2_normalize
    from cqa_core.settings import Settings
    from cqa_core.training.distill import Face, _sources, make_teacher

    src = Settings.from_env().lfw
    aligned = ensure_aligned(src)
    pairs = read_pairs(src / "pairs.txt")
    pairs = [pairs[i] for i in subsample(len(pairs), args.limit)]
    uniq = unique_images(pairs)
    where = {k: i for i, k in enumerate(uniq)}
    sources = _sources(aligned)
    teacher = make_teacher(args.teacher)
    t0 = time.perf_counter()
    emb = []
    for start in tqdm(range(0, len(uniq), args.batch_size), desc=f"teacher {teacher.name}", unit="batch"):
        faces = []
        for name, idx in uniq[start:start + args.batch_size]:
            path = resolve_image(aligned, name, idx)
            photo, lm = sources.get(path.relative_to(aligned).as_posix(), (None, None))
            faces.append(Face(load_image(path), photo, lm))
        emb.append(teacher(faces))
    emb = np.concatenate(emb)  # (M, D)
    seconds = time.perf_counter() - t0
    i1 = np.array([where[(q.name1, q.idx1)] for q in pairs])
    i2 = np.array([where[(q.name2, q.idx2)] for q in pairs])
    same = np.array([q.same for q in pairs])
    folds = np.array([q.fold for q in pairs])
    centred = l2_normalize(emb - emb.mean(axis=0))  # (M, D)
    rows = {
        "euclidean (dlib's metric)": evaluate_scores(-np.linalg.norm(emb[i1] - emb[i2], axis=1), same, folds),
        "cosine, centred": evaluate_scores((centred[i1] * centred[i2]).sum(axis=1), same, folds),
    }
    result = {"teacher": teacher.name, "pairs": len(pairs), "images": len(uniq), "seconds": round(seconds, 1),
              **{k: {"accuracy": r.accuracy, "accuracy_std": r.accuracy_std, "tar_at_far": r.tar_at_far}
                 for k, r in rows.items()}}
    print(f"teacher {teacher.name}: {len(pairs)} LFW View 2 pairs, {len(uniq)} images, {seconds:.0f} s")
    for k, r in rows.items():
        tars = "  ".join(f"TAR@FAR {far}: {100 * v:.2f}%" for far, v in r.tar_at_far.items())
        print(f"  {k:<26} accuracy {100 * r.accuracy:.2f}% +- {100 * r.accuracy_std:.2f}   {tars}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
