"""The paper's ablation (Table 1 and the b column of Table 2) at CPU scale.

A *cell* is one row of those tables; a *run* is one cell trained with one seed. Every run starts
from ``configs/default_cpu.py`` (light stem, CosFace s = 32, m = 0.25, CelebA-299) and changes only
the cell's switches and the schedule, so the cells differ in nothing but what the paper ablates:

=============  =====  ====  ==========  ===========================================
cell           QAN    b     diversity   paper row
=============  =====  ====  ==========  ===========================================
baseline       off    4     none        Table 1, no CAL / QAN / L_D
cal            off    4     CAL         Table 1, + CAL
qan_ld         on     4     L_D         Table 1, + QAN with L_D (Eq. 3)
cal_qan        on     4     CAL         Table 1 and Table 2 (b = 4): CQA-Face
cal_qan_b2     on     2     CAL         Table 2, b = 2
cal_qan_b8     on     8     CAL         Table 2, b = 8
=============  =====  ====  ==========  ===========================================

Each finished run writes one JSON file (``<cell>_seed<k>.json``) with its config, training time
and these measurements on LFW View 2 (6,000 pairs, 10 folds, aligned cache):

* ``lfw``: verification accuracy, std over folds, TAR at FAR 1e-2 / 1e-3;
* ``masked_m2n``: the same pairs with the second face masked (``cqa eval --protocol masked-m2n``'s
  masks: random MaskTheFace template, seed = pair index + 1);
* ``diversity``: on ``probe_faces`` LFW faces, the mean off-diagonal Gaussian similarity of the b
  attention maps (Eq. 2 before the hinge; lower = more diverse) and the CAL penalty itself;
* ``mask_quality``: on the same faces, clean vs masked. A branch *looks at the mask* on a face
  when its share of attention inside the mask (alpha-weighted) exceeds the mask's share of the
  image, i.e. it attends there more than a uniform map would. ``drop_looking`` is the mean QAN
  quality fall (clean - masked) of those branches, ``drop_other`` that of the rest. Without QAN
  every quality is 1, so both are None.

The grid is resumable: a run whose JSON exists is skipped. ``summarise`` folds the runs into the
per-cell mean +- std (over seeds) that docs/results/ablation/summary.json and
notebooks/07_ablation.ipynb show. ``python -m cqa_core.evaluation.ablation --help`` runs it from a shell.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cqa_core.checkpoint import atomic_write, load_default, load_model, resolve
from cqa_core.config import AugmentConfig, DistillConfig, to_dict
from cqa_core.data import data_place, repo_root
from cqa_core.data.align_run import align_folder
from cqa_core.data.datasets import FaceFolder
from cqa_core.data.degrade import masked_side
from cqa_core.data.verification import load_pairset
from cqa_core.evaluation.protocols import embed
from cqa_core.explain.diversity import diversity_of_maps
from cqa_core.explain.quality import occlusion_probe
from cqa_core.explain.tensors import as_batch, upsample
from cqa_core.metrics import evaluate_pairs
from cqa_core.settings import Settings
from cqa_core.training.overrides import load_preset
from cqa_core.training.trainer import Trainer

CELLS: dict[str, dict[str, Any]] = {
    "baseline": {"qan": False, "branches": 4, "div_loss": "none"},
    "cal": {"qan": False, "branches": 4, "div_loss": "cal"},
    "qan_ld": {"qan": True, "branches": 4, "div_loss": "ld"},
    "cal_qan": {"qan": True, "branches": 4, "div_loss": "cal"},
    "cal_qan_b2": {"qan": True, "branches": 2, "div_loss": "cal"},
    "cal_qan_b8": {"qan": True, "branches": 8, "div_loss": "cal"},
    "qan": {"qan": True, "branches": 4, "div_loss": "none"},
}
TABLES = {"table1": ["baseline", "cal", "qan_ld", "cal_qan"], "table2_b": ["cal_qan_b2", "cal_qan", "cal_qan_b8"]}
# paper: clean data, no teacher; ours: configs/default_cpu.py as it is; occlusion / distill: ours
# with only that lever (occlusion = the training degradations + QAN quality supervision)
RECIPES = ("paper", "ours", "occlusion", "distill")

# The short schedule every run uses: 340 steps of 64 faces (3.5 epochs of CelebA-299, about 5 min
# on 2 CPU cores): 0.3 epoch warm-up, lr 0.01 through epoch 3, lr / 10 for the last 46 steps
# (epoch 4; ``cqa_core.training.schedule`` counts epochs from 1). The 18-run grid
# took 2 h 7 min (docs/model_card.md); the default model's 20 epochs would take about 10 hours.
SCHEDULE: dict[str, Any] = {"epochs": 4, "max_steps": 340, "warmup_epochs": 0.3, "lr_milestones": (4,),
                            "final_lr": None, "final_lr_epoch": None}
RESULTS = repo_root() / "docs" / "results" / "ablation"


def cell_config(cell: str, seed: int, out_dir: str | Path, schedule: dict[str, Any] | None = None,
                preset: str | Path | None = None, recipe: str = "paper") -> Any:
    """The TrainConfig of one run: the CPU preset with the cell's switches, seed and schedule.

    ``recipe="paper"`` (the grid's default) turns off what the preset adds to the paper (training
    degradations, distillation, quality supervision); ``"ours"`` keeps them; ``"occlusion"`` keeps
    the degradations and quality supervision without the teacher; ``"distill"`` keeps only the teacher.
    """
    if cell not in CELLS:
        raise ValueError(f"unknown ablation cell {cell!r}; choose from {sorted(CELLS)}")
    if recipe not in RECIPES:
        raise ValueError(f"unknown recipe {recipe!r}; choose from {RECIPES}")
    sw = CELLS[cell]
    base = load_preset(preset or repo_root() / "configs" / "default_cpu.py")
    if recipe in ("paper", "distill"):
        base = dataclasses.replace(base, augment=AugmentConfig(), loss=dataclasses.replace(base.loss, quality_weight=0.0))
    if recipe in ("paper", "occlusion"):
        base = dataclasses.replace(base, distill=DistillConfig())
    return dataclasses.replace(
        base,
        model=dataclasses.replace(base.model, qan=sw["qan"], branches=sw["branches"]),
        loss=dataclasses.replace(base.loss, diversity=sw["div_loss"]),
        seed=seed, out_dir=str(out_dir), eval_pairs=None, progress=False, tensorboard=False,
        save_every=0, keep_last=1, **(SCHEDULE if schedule is None else schedule),
    )


class Probe:
    """LFW View 2 loaded once, plus the masked copies every run is measured on."""

    def __init__(self, spec: str = "lfw", probe_faces: int = 300, limit: int | None = None,
                 align: str = "mtcnn", places: Settings | None = None) -> None:
        """``places``: the entry point's settings (data and cache roots; None: their defaults)."""
        places = places or Settings()
        self.pairs = load_pairset(spec, limit=limit, align=align, places=places)
        masks = places.data_root / "masks"
        self.masked2 = masked_side(self.pairs.images, self.pairs.index2, mask_root=masks)  # (N, 112, 112, 3)
        seconds = np.unique(self.pairs.index2)  # (K,) faces that appear as a second side
        pick = seconds[:: max(1, len(seconds) // probe_faces)][:probe_faces]  # (P,) spread over LFW
        self.faces = self.pairs.images[pick]  # (P, 112, 112, 3)
        self.faces_masked, self.alpha = masked_side(self.pairs.images, pick, alpha=True, mask_root=masks)  # (P, ...), (P, 112, 112)


def smoke_inputs(workdir: str | Path, faces: int = 96, pairs: int = 300,
                 places: Settings | None = None) -> tuple[Probe, Any]:
    """Seconds-scale stand-ins for one run (notebook smoke cell, tests): ``pairs`` LFW pairs
    centre-cropped from the raw photos (no MTCNN pass over all of LFW) and the first ``faces``
    CelebA-299 photos aligned into ``workdir``. Use them with a batch size below ``faces``."""
    dst = Path(workdir) / "celeba299-head"
    align_folder(data_place(places and places.data_root) / "celeba299", dst, workers=1, limit=faces, progress=False)
    return Probe(probe_faces=40, limit=pairs, align="center", places=places), FaceFolder(dst)


def measure(model: Any, probe: Probe, batch_size: int = 64) -> dict[str, Any]:
    """LFW and masked-LFW verification, attention diversity and mask quality of one model."""
    ps = probe.pairs
    emb = embed(model, ps.images, batch_size=batch_size, progress=False)  # (M, D)
    emb_m = embed(model, probe.masked2, batch_size=batch_size, progress=False)  # (N, D)
    clean = evaluate_pairs(emb[ps.index1], emb[ps.index2], ps.issame, ps.folds)
    masked = evaluate_pairs(emb[ps.index1], emb_m, ps.issame, ps.folds)

    def forward(images: np.ndarray) -> Any:
        with torch.inference_mode():
            return model(as_batch(images, torch.device("cpu")))  # embed() above runs on the CPU too

    model.eval()
    out_c, out_m = forward(probe.faces), forward(probe.faces_masked)
    div = diversity_of_maps(out_c.attention_maps).summary()
    maps = upsample(out_c.attention_maps, 112).numpy()  # (P, b, 112, 112)
    share = (maps * probe.alpha[:, None]).sum((2, 3)) / maps.sum((2, 3)).clip(1e-12)  # (P, b)
    looking = share > probe.alpha.mean((1, 2))[:, None]  # (P, b) more than a uniform map
    drop = (out_c.quality - out_m.quality).numpy()  # (P, b)
    has_qan = bool(getattr(model.config, "qan", True))
    occ = occlusion_probe(model, probe.faces, probe.faces_masked, probe.alpha) if has_qan else None

    def mean_or_none(sel: np.ndarray) -> float | None:
        return float(drop[sel].mean()) if has_qan and sel.any() else None

    return {
        "lfw": _verification(clean), "masked_m2n": _verification(masked),
        "diversity": {"faces": div["faces"], "mean_gaussian": div["mean_gaussian"], "cal": div["cal"],
                      "mean_iou": div["mean_iou"]},
        "mask_quality": {"faces": int(len(probe.faces)), "looking_fraction": float(looking.mean()),
                         "drop_looking": mean_or_none(looking), "drop_other": mean_or_none(~looking),
                         "quality_clean": float(out_c.quality.mean()) if has_qan else None,
                         "most_covered_loses_more": occ.most_loses_more if occ else None,
                         "overall_falls": occ.overall_falls if occ else None},
    }


def _verification(r: Any) -> dict[str, float]:
    return {"accuracy": r.accuracy, "std": r.accuracy_std, "tar_1e-2": r.tar_at_far[1e-2],
            "tar_1e-3": r.tar_at_far[1e-3]}


def run_one(cell: str, seed: int, probe: Probe, results: Path = RESULTS, runs: Path | str = "runs/ablation",
            schedule: dict[str, Any] | None = None, dataset: Any = None, recipe: str = "paper") -> dict[str, Any]:
    """Train one (cell, seed), measure it, write ``results/<cell>_seed<seed>.json``; return the record.

    ``schedule`` replaces :data:`SCHEDULE` (any TrainConfig fields, e.g. a 5-step smoke run);
    ``dataset`` replaces the preset's CelebA-299 (tests).
    """
    config = cell_config(cell, seed, Path(runs) / f"{cell}_seed{seed}", schedule, recipe=recipe)
    t0 = time.perf_counter()
    trainer = Trainer(config, dataset=dataset)
    last = trainer.fit()
    train_s = time.perf_counter() - t0
    model = trainer.model.eval()
    t1 = time.perf_counter()
    record = {"cell": cell, "seed": seed, "recipe": recipe, **CELLS[cell], "steps": trainer.step, "train_s": round(train_s, 1),
              "final_loss": last.get("loss"), "threads": torch.get_num_threads(), **measure(model, probe)}
    record["measure_s"] = round(time.perf_counter() - t1, 1)
    record["config"] = to_dict(config)
    atomic_write(Path(results) / f"{cell}_seed{seed}.json", lambda tmp: Path(tmp).write_text(json.dumps(record, indent=1)))
    return record


def load_runs(results: Path = RESULTS) -> list[dict[str, Any]]:
    """Every run record in ``results`` (sorted by cell, seed)."""
    recs = [json.loads(p.read_text()) for p in sorted(Path(results).glob("*_seed*.json"))]
    return sorted(recs, key=lambda r: (list(CELLS).index(r["cell"]), r["seed"]))


METRICS = {
    "lfw": ("lfw", "accuracy"), "masked_m2n": ("masked_m2n", "accuracy"),
    "mean_gaussian": ("diversity", "mean_gaussian"), "drop_looking": ("mask_quality", "drop_looking"),
    "drop_other": ("mask_quality", "drop_other"),
    "most_covered_loses_more": ("mask_quality", "most_covered_loses_more"),
    "overall_falls": ("mask_quality", "overall_falls"),
}


def summarise(runs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per cell: seeds, and mean / std (over seeds, ddof 1) of each metric in :data:`METRICS`."""
    out: dict[str, dict[str, Any]] = {}
    for cell in CELLS:
        rs = [r for r in runs if r["cell"] == cell]
        if not rs:
            continue
        row: dict[str, Any] = {"seeds": [r["seed"] for r in rs], **CELLS[cell]}
        for name, (group, key) in METRICS.items():
            vals = [r[group][key] for r in rs if r[group].get(key) is not None]  # older runs lack the probe
            row[name] = None if not vals else {"mean": float(np.mean(vals)),
                                               "std": float(np.std(vals, ddof=1)) if len(vals) > 1 else None}
        out[cell] = row
    return out


LABELS = {"baseline": "baseline (no CAL, no QAN)", "cal": "+ CAL", "qan_ld": "+ QAN, L_D",
          "cal_qan": "CAL + QAN (b = 4)", "cal_qan_b2": "CAL + QAN, b = 2", "cal_qan_b8": "CAL + QAN, b = 8",
          "qan": "+ QAN, no diversity loss"}


def format_table(summary: dict[str, dict[str, Any]]) -> str:
    """A markdown table of :func:`summarise`: accuracies in %, mean +- std over seeds."""

    def cell(v: dict[str, Any] | None, pct: bool) -> str:
        if v is None:
            return "n/a"
        k = 100.0 if pct else 1.0
        std = "" if v["std"] is None else f" +- {k * v['std']:.{2 if pct else 3}f}"
        return f"{k * v['mean']:.{2 if pct else 3}f}{std}"

    lines = ["| cell | seeds | LFW % | masked LFW (M2N) % | Gaussian sim. of maps | quality drop, mask-looking "
             "branches | quality drop, other branches | most-covered branch loses more | overall quality falls |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for name, row in summary.items():
        lines.append(f"| {LABELS[name]} | {len(row['seeds'])} | {cell(row['lfw'], True)} | {cell(row['masked_m2n'], True)}"
                     f" | {cell(row['mean_gaussian'], False)} | {cell(row['drop_looking'], False)}"
                     f" | {cell(row['drop_other'], False)} | {cell(row.get('most_covered_loses_more'), True)}"
                     f" | {cell(row.get('overall_falls'), True)} |")
    return "\n".join(lines)


def format_reference(record: dict[str, Any]) -> str:
    """One markdown row for a measured model (``reference_default_model.json``), the table's columns."""

    def pct(v: float | None) -> str:
        return "n/a" if v is None else f"{100 * v:.2f}"

    def num(v: float | None) -> str:
        return "n/a" if v is None else f"{v:.3f}"

    q = record["mask_quality"]
    return (f"| {record.get('model', 'model')} | 1 | {pct(record['lfw']['accuracy'])} | "
            f"{pct(record['masked_m2n']['accuracy'])} | {num(record['diversity']['mean_gaussian'])} | "
            f"{num(q['drop_looking'])} | {num(q['drop_other'])} | {pct(q.get('most_covered_loses_more'))} | "
            f"{pct(q.get('overall_falls'))} |")


def reference_name(path: str | Path) -> str:
    """The name a measured checkpoint's record takes: its run folder (``runs/nocal_full/model.safetensors``
    -> ``nocal_full``), or the file's stem when it lies elsewhere than a run's ``model.safetensors``."""
    p = Path(path)
    return p.name if p.is_dir() else (p.parent.name if p.stem == "model" and p.parent.name else p.stem)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m cqa_core.evaluation.ablation", description=__doc__.split("\n")[0])
    ap.add_argument("--cells", nargs="+", default=list(CELLS), choices=list(CELLS))
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    ap.add_argument("--recipe", choices=RECIPES, default="paper",
                    help="paper: our additions off (the grid); ours: the CPU preset as it is; "
                    "occlusion / distill: ours with only that lever")
    ap.add_argument("--results", default=None,
                    help="folder for the per-run JSON and summary.json (default docs/results/ablation, "
                    "or its RECIPE/ subfolder for the other recipes)")
    ap.add_argument("--runs", default="runs/ablation", help="training run folders (checkpoints, metrics)")
    ap.add_argument("--limit", type=int, default=None, help="LFW pairs to use (default all 6,000)")
    ap.add_argument("--measure-default", action="store_true",
                    help="also measure the bundled default model the same way (reference_default_model.json)")
    ap.add_argument("--measure-checkpoint", nargs="+", default=[], metavar="PATH",
                    help="also measure these trained models the same way (reference_<run folder>.json; "
                    "e.g. a no-CAL run of the full preset against the default model)")
    ap.add_argument("--no-train", action="store_true",
                    help="train no missing (cell, seed) run: only measure (with --measure-default) and "
                    "summarise the runs already in --results")
    args = ap.parse_args(argv)
    places = Settings.from_env()  # this module's command line is an entry point
    results = Path(args.results or (RESULTS if args.recipe == "paper" else RESULTS / args.recipe))
    references = {"default_model": None} if args.measure_default else {}
    references.update({reference_name(p): p for p in args.measure_checkpoint})
    if references:
        probe = Probe(limit=args.limit, places=places)
        results.mkdir(parents=True, exist_ok=True)
        for name, path in references.items():
            model = load_default() if path is None else load_model(path)
            label = "cqa_core/weights/default.safetensors" if path is None else str(resolve(path))
            ref = {"model": label, **measure(model, probe)}
            (results / f"reference_{name}.json").write_text(json.dumps(ref, indent=1))
            print(format_reference(ref), flush=True)
    todo = [] if args.no_train else [(c, s) for s in args.seeds for c in args.cells
                                     if not (results / f"{c}_seed{s}.json").exists()]
    print(f"{len(todo)} runs to do, results in {results}", flush=True)
    probe = Probe(limit=args.limit, places=places) if todo else None
    for i, (cell, seed) in enumerate(todo, 1):
        r = run_one(cell, seed, probe, results, args.runs, recipe=args.recipe)
        print(f"[{i}/{len(todo)}] {cell} seed {seed}: LFW {100 * r['lfw']['accuracy']:.2f}%  masked "
              f"{100 * r['masked_m2n']['accuracy']:.2f}%  gauss {r['diversity']['mean_gaussian']:.3f}  "
              f"train {r['train_s']:.0f}s measure {r['measure_s']:.0f}s", flush=True)
    runs = load_runs(results)
    if not runs:  # only references were measured: no grid to summarise, no empty summary.json
        return 0
    summary = summarise(runs)
    (results / "summary.json").write_text(json.dumps(summary, indent=1))
    print(format_table(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
