"""The ablation grid: cell configs, the mask-quality rule on a stub with known answers, summaries."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from cqa_core.data.verification import PairSet
from cqa_core.evaluation import ablation


def _probe(seed: int = 0) -> SimpleNamespace:
    """4 faces, 20 pairs (2 per fold); the mask covers rows 67.. (40 % of the image), white."""
    rng = np.random.default_rng(seed)
    faces = rng.integers(0, 200, (4, 112, 112, 3)).astype(np.uint8)
    masked = faces.copy()
    masked[:, 67:] = 255
    alpha = np.zeros((4, 112, 112), np.float32)
    alpha[:, 67:] = 1.0
    index1, index2 = rng.integers(0, 4, 20), rng.integers(0, 4, 20)
    pairs = PairSet("stub", faces, index1, index2, index1 == index2, np.repeat(np.arange(10), 2))
    return SimpleNamespace(pairs=pairs, masked2=masked[index2], faces=faces, faces_masked=masked, alpha=alpha)


class _Stub(torch.nn.Module):
    """Branch 0 looks at the bottom rows (where the mask goes), branch 1 at the top rows. A masked
    face (bottom rows white = 1.0 after normalisation) costs branch 0 0.3 quality, branch 1 0.1."""

    def __init__(self, qan: bool = True) -> None:
        super().__init__()
        self.config = SimpleNamespace(qan=qan)

    def forward(self, x: torch.Tensor) -> SimpleNamespace:
        b = x.shape[0]
        maps = torch.zeros(b, 2, 7, 7)  # (B, 2, 7, 7)
        maps[:, 0, 5:] = 1.0
        maps[:, 1, :2] = 1.0
        masked = (x[:, :, 70:] > 0.99).float().mean((1, 2, 3)) > 0.9  # (B,)
        quality = torch.stack([0.9 - 0.3 * masked, 0.8 - 0.1 * masked], 1)  # (B, 2)
        if not self.config.qan:
            quality = torch.ones(b, 2)
        return SimpleNamespace(embedding=x.mean((2, 3)), attention_maps=maps, quality=quality)


def test_mask_quality_separates_the_branch_that_looks_at_the_mask() -> None:
    m = ablation.measure(_Stub(), _probe())
    q = m["mask_quality"]
    assert q["looking_fraction"] == pytest.approx(0.5)  # branch 0 on every face, never branch 1
    assert q["drop_looking"] == pytest.approx(0.3, abs=1e-6)
    assert q["drop_other"] == pytest.approx(0.1, abs=1e-6)
    assert q["quality_clean"] == pytest.approx(0.85)
    assert 0.0 <= m["lfw"]["accuracy"] <= 1.0 and 0.0 <= m["masked_m2n"]["accuracy"] <= 1.0
    # the two maps never overlap: Gaussian similarity exp(-(1 - 0)^2 / 0.01) on 4 of 7 rows, 1 on
    # the row both leave empty -> (4 * e^-100 + 3) / 7 before upsampling (diversity uses raw maps)
    assert m["diversity"]["mean_gaussian"] == pytest.approx(3 / 7, abs=1e-6)


def test_without_qan_there_is_no_quality_drop() -> None:
    q = ablation.measure(_Stub(qan=False), _probe())["mask_quality"]
    assert q["drop_looking"] is None and q["drop_other"] is None and q["quality_clean"] is None


def test_cell_configs_change_only_the_ablated_switches(tmp_path: Path) -> None:
    base = ablation.cell_config("cal_qan", 0, tmp_path)
    assert (base.model.qan, base.model.branches, base.loss.diversity) == (True, 4, "cal")
    assert (base.max_steps, base.lr_milestones, base.eval_pairs) == (340, (4,), None)
    for cell, (qan, b, div) in {"baseline": (False, 4, "none"), "cal": (False, 4, "cal"), "qan_ld": (True, 4, "ld"),
                                "cal_qan_b2": (True, 2, "cal"), "cal_qan_b8": (True, 8, "cal")}.items():
        c = ablation.cell_config(cell, 2, tmp_path)
        assert (c.model.qan, c.model.branches, c.loss.diversity, c.seed) == (qan, b, div, 2)
        assert (c.loss.scale, c.loss.margin, c.lr, c.batch_size, c.data) == (
            base.loss.scale, base.loss.margin, base.lr, base.batch_size, base.data)
    with pytest.raises(ValueError, match="unknown ablation cell"):
        ablation.cell_config("cal_qan_b16", 0, tmp_path)


def test_paper_recipe_turns_our_additions_off_and_ours_keeps_them(tmp_path: Path) -> None:
    paper = ablation.cell_config("qan", 0, tmp_path)
    assert not paper.augment.enabled and paper.distill.teacher is None and paper.loss.quality_weight == 0.0
    assert (paper.model.qan, paper.loss.diversity) == (True, "none")
    ours = ablation.cell_config("qan", 0, tmp_path, recipe="ours")
    assert ours.augment.enabled and ours.distill.teacher == "dlib" and ours.loss.quality_weight > 0
    assert (ours.model, ours.loss.diversity, ours.max_steps) == (paper.model, "none", 340)
    occ = ablation.cell_config("qan", 0, tmp_path, recipe="occlusion")
    assert occ.augment.enabled and occ.loss.quality_weight > 0 and occ.distill.teacher is None
    dis = ablation.cell_config("qan", 0, tmp_path, recipe="distill")
    assert not dis.augment.enabled and dis.loss.quality_weight == 0.0 and dis.distill.teacher == "dlib"


def test_summary_is_mean_and_sample_std_over_seeds() -> None:
    def run(cell: str, seed: int, acc: float, drop: float | None) -> dict:
        return {"cell": cell, "seed": seed, "lfw": {"accuracy": acc}, "masked_m2n": {"accuracy": acc - 0.1},
                "diversity": {"mean_gaussian": 0.5}, "mask_quality": {"drop_looking": drop, "drop_other": drop}}

    s = ablation.summarise([run("cal_qan", 0, 0.8, 0.2), run("cal_qan", 1, 0.9, 0.4), run("baseline", 0, 0.7, None)])
    assert list(s) == ["baseline", "cal_qan"]  # table order, cells without runs left out
    assert s["cal_qan"]["lfw"]["mean"] == pytest.approx(0.85)
    assert s["cal_qan"]["lfw"]["std"] == pytest.approx(np.sqrt(0.005))  # ddof 1: sqrt(2 * 0.05^2 / 1)
    assert s["cal_qan"]["drop_looking"]["mean"] == pytest.approx(0.3)
    assert s["baseline"]["drop_looking"] is None and s["baseline"]["lfw"]["std"] is None
    table = ablation.format_table(s)
    assert "| CAL + QAN (b = 4) | 2 | 85.00 +- 7.07 | 75.00 +- 7.07 |" in table


def test_run_one_trains_measures_and_resumes_by_file(face_folder: Path, tmp_path: Path) -> None:
    from cqa_core.data.datasets import FaceFolder

    schedule = {**ablation.SCHEDULE, "max_steps": 2, "epochs": 1, "lr_milestones": (), "batch_size": 8}
    results = tmp_path / "results"
    rec = ablation.run_one("cal_qan_b2", 1, _probe(), results, tmp_path / "runs", schedule,
                           dataset=FaceFolder(face_folder))
    stored = json.loads((results / "cal_qan_b2_seed1.json").read_text())
    assert stored["steps"] == rec["steps"] == 2 and stored["branches"] == 2 and stored["div_loss"] == "cal"
    assert stored["config"]["model"]["branches"] == 2 and stored["config"]["seed"] == 1
    assert ablation.load_runs(results)[0]["cell"] == "cal_qan_b2"


def test_no_train_summarises_what_is_there_and_trains_nothing(tmp_path: Path, monkeypatch) -> None:
    def refuse(*a, **k):
        raise AssertionError("--no-train must not train")

    monkeypatch.setattr(ablation, "run_one", refuse)
    run = {"cell": "cal", "seed": 0, "lfw": {"accuracy": 0.75}, "masked_m2n": {"accuracy": 0.7},
           "diversity": {"mean_gaussian": 0.1}, "mask_quality": {"drop_looking": None, "drop_other": None}}
    (tmp_path / "cal_seed0.json").write_text(json.dumps(run))
    assert ablation.main(["--results", str(tmp_path), "--no-train"]) == 0  # every other (cell, seed) is missing
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert list(summary) == ["cal"] and summary["cal"]["lfw"]["mean"] == pytest.approx(0.75)


def test_measure_checkpoint_measures_a_trained_model_under_its_run_name(tmp_path: Path, monkeypatch) -> None:
    from cqa_core.checkpoint import save_model
    from cqa_core.config import ModelConfig
    from cqa_core.model import create_model

    save_model(tmp_path / "nocal_full" / "model.safetensors", create_model(ModelConfig(stem="light", branches=2)))
    seen = []
    monkeypatch.setattr(ablation, "Probe", lambda limit=None, places=None: "probe")
    monkeypatch.setattr(ablation, "measure", lambda model, probe: seen.append((model.config.branches, probe)) or {
        "lfw": {"accuracy": 0.8}, "masked_m2n": {"accuracy": 0.7}, "diversity": {"mean_gaussian": 0.25},
        "mask_quality": {"drop_looking": 0.1, "drop_other": 0.0}})
    out = tmp_path / "results"
    assert ablation.main(["--results", str(out), "--no-train", "--measure-checkpoint",
                          str(tmp_path / "nocal_full" / "model.safetensors")]) == 0
    assert seen == [(2, "probe")]  # the checkpoint's own config (b = 2), not the default model
    ref = json.loads((out / "reference_nocal_full.json").read_text())
    assert ref["diversity"]["mean_gaussian"] == 0.25 and ref["model"].endswith("nocal_full/model.safetensors")
    assert not (out / "summary.json").exists()  # no grid runs in the folder: nothing to summarise
    assert ablation.reference_name(tmp_path / "nocal_full") == "nocal_full"
    assert ablation.reference_name("weights/teacher_student.safetensors") == "teacher_student"
