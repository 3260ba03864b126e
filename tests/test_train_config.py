"""TrainConfig presets, ``--set`` overrides and the paper's LR schedule (issue 4)."""

from __future__ import annotations

from pathlib import Path

import pytest

from cqa_core.config import TrainConfig, to_dict, train_config_from_dict
from cqa_core.training.overrides import apply_overrides, load_preset, valid_keys
from cqa_core.training.schedule import epoch_lrs, lr_at

REPO = Path(__file__).resolve().parents[1]
PRESETS = ["default_cpu", "vggface2_r100", "ms1mv2_r100"]


@pytest.mark.parametrize("name", PRESETS)
def test_presets_load_and_accept_common_keys(name: str, tmp_path: Path) -> None:
    config = load_preset(REPO / "configs" / f"{name}.py")
    out = apply_overrides(config, ["seed=7", "max_steps=3", f"out_dir={tmp_path}", "data_root=/x/y", "batch_size=32",
                                   "lr=1e-3", "epochs=2"])
    assert (out.seed, out.max_steps, out.out_dir, out.data.root, out.batch_size, out.lr, out.epochs) == (
        7, 3, str(tmp_path), "/x/y", 32, 1e-3, 2)


def test_nested_keys_tuples_none_and_bools() -> None:
    c = apply_overrides(TrainConfig(), ["model.stem=light", "loss.margin=0.4", "lr_milestones=(3, 5)",
                                        "grad_clip=None", "compile=True", "lr=1", "stem=r50"])
    assert c.model.stem == "r50" and c.loss.margin == 0.4 and c.lr_milestones == (3, 5)
    assert c.grad_clip is None and c.compile is True and isinstance(c.lr, float)


@pytest.mark.parametrize(("raw", "want"), [("false", False), ("OFF", False), ("no", False), ("true", True),
                                         ("on", True), ("False", False), ("0", None)])
def test_bools_take_shell_spellings(raw: str, want: bool | None) -> None:
    if want is None:  # 0 / 1 stay ambiguous and are refused, as before
        with pytest.raises(ValueError, match="does not fit"):
            apply_overrides(TrainConfig(), [f"progress={raw}"])
    else:
        assert apply_overrides(TrainConfig(), [f"progress={raw}"]).progress is want


def test_unknown_key_lists_valid_keys() -> None:
    with pytest.raises(ValueError, match="unknown config key 'bogus'.*Valid keys:.*max_steps.*data_root"):
        apply_overrides(TrainConfig(), ["bogus=1"])
    with pytest.raises(ValueError, match="unknown config key 'model.nope'"):
        apply_overrides(TrainConfig(), ["model.nope=1"])


@pytest.mark.parametrize("item", ["batch_size=abc", "batch_size=1.5", "compile=3", "precision=fp8", "lr=[1]", "nokey"])
def test_bad_values_are_rejected(item: str) -> None:
    with pytest.raises(ValueError):
        apply_overrides(TrainConfig(), [item])


def test_cli_reports_unknown_key(capsys: pytest.CaptureFixture[str]) -> None:
    from cqa_core.commands.train import main

    assert main(["--set", "nonsense=1", "--print-config"]) == 2
    assert "Valid keys" in capsys.readouterr().err


def test_config_round_trips_through_json() -> None:
    c = apply_overrides(TrainConfig(), ["model.stem=light", "lr_milestones=(2, 4)"])
    assert train_config_from_dict(to_dict(c)) == c
    assert "data.root" in valid_keys()


def test_paper_schedules() -> None:
    vgg = load_preset(REPO / "configs" / "vggface2_r100.py")
    lrs = epoch_lrs(vgg)
    assert len(lrs) == 12 and lrs[2:6] == [0.03] * 4
    assert lrs[6:9] == pytest.approx([0.003] * 3) and lrs[9:11] == pytest.approx([3e-4] * 2) and lrs[11] == 1e-4
    ms = epoch_lrs(load_preset(REPO / "configs" / "ms1mv2_r100.py"))
    assert len(ms) == 24 and ms[11] == 0.03 and ms[12] == pytest.approx(0.003)
    assert ms[18] == pytest.approx(3e-4) and ms[22:] == [1e-4, 1e-4]
    # linear warm-up over 2 epochs of 10 steps
    assert lr_at(0, 10, vgg) == pytest.approx(0.03 / 20) and lr_at(19, 10, vgg) == pytest.approx(0.03)


def test_degradations_and_distillation_are_ours_only_in_the_cpu_preset() -> None:
    for name in ("vggface2_r100", "ms1mv2_r100"):  # the paper's recipe: clean data, no teacher
        c = load_preset(REPO / "configs" / f"{name}.py")
        assert not c.augment.enabled and c.distill.teacher is None and c.loss.quality_weight == 0.0
    cpu = load_preset(REPO / "configs" / "default_cpu.py")
    assert cpu.augment.p_mask > 0 and cpu.augment.p_occluder > 0 and cpu.augment.p_blur > 0
    assert cpu.augment.p_lowres > 0 and cpu.distill.teacher == "dlib" and cpu.loss.quality_weight > 0
    c = apply_overrides(cpu, ["augment.p_mask=0.5", "augment.blur_sigma=(1.0, 2.0)", "distill.teacher=None"])
    assert train_config_from_dict(to_dict(c)) == c and c.augment.blur_sigma == (1.0, 2.0)
    with pytest.raises(ValueError, match="probability"):
        apply_overrides(cpu, ["augment.p_blur=1.5"])


def test_the_trainer_imports_first_in_a_fresh_interpreter() -> None:
    import subprocess
    import sys

    # no import cycle: the trainer module imported before anything else of the package
    code = "import cqa_core.training.trainer as t; assert t.Trainer.__module__ == 'cqa_core.training.trainer'"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO)
