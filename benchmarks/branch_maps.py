"""Do the branch maps differ in *where* they look, or only in how bright they are?

CAL (Eq. 2) compares maps location by location through exp(-(M_i - M_j)^2 / sigma), sigma = 0.01:
two maps with the same shape but different levels (one at 0.5 where the other is at 0.2) already
count as dissimilar. This prints, per checkpoint, on the ablation probe's 300 LFW faces
(``cqa_core.evaluation.ablation.Probe``, MTCNN-aligned):

* ``gauss``: the Gaussian similarity CAL acts on (t = 0; the ablation's "Gaussian sim." column);
* ``gauss_pk``: the same on maps divided by their own peak (what ``loss.cal_peak_norm`` trains on);
* ``iou20``: IoU of the top-20% locations of two maps (level-free: where each branch looks most);
* ``corr``: Pearson correlation of two maps over the 7 x 7 cells (level- and scale-free;
  ``cqa_core.explain.diversity.map_correlation``);
* ``entropy`` / ``coverage`` (share of cells >= 0.5) and each branch's mean level.

All pair numbers are means over faces and over branch pairs i != j.

    .venv/bin/python benchmarks/branch_maps.py cqa_core/weights/default.safetensors runs/x/model.safetensors
"""

from __future__ import annotations

import argparse

import torch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoints", nargs="+")
    parser.add_argument("--faces", type=int, default=300)
    args = parser.parse_args()

    from cqa_core.checkpoint import load_model
    from cqa_core.evaluation.ablation import Probe
    from cqa_core.explain.diversity import diversity_of_maps, map_correlation
    from cqa_core.explain.tensors import as_batch
    from cqa_core.losses import peak_normalise

    probe = Probe(probe_faces=args.faces)
    print("| checkpoint | gauss | gauss_pk | iou20 | corr | entropy | coverage | branch levels |")
    print("|---|---:|---:|---:|---:|---:|---:|---|")
    for path in args.checkpoints:
        model = load_model(path).eval()
        with torch.inference_mode():
            maps = model(as_batch(probe.faces, torch.device("cpu"))).attention_maps  # (P, b, 7, 7)
        s = diversity_of_maps(maps).summary()
        gauss_pk = diversity_of_maps(peak_normalise(maps)).summary()["mean_gaussian"]
        levels = " / ".join(f"{v:.2f}" for v in maps.mean((0, 2, 3)).tolist())
        print(f"| {path} | {s['mean_gaussian']:.3f} | {gauss_pk:.3f} | {s['mean_iou']:.3f} | {map_correlation(maps).mean():.3f} "
              f"| {s['entropy']:.3f} | {s['coverage']:.3f} | {levels} |")


if __name__ == "__main__":
    main()
