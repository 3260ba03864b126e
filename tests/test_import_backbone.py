"""``cqa import-backbone insightface``: an arcface_torch iResNet state dict becomes the CQA stem.

The source state dicts here are built from the layout of insightface's published
``recognition/arcface_torch/backbones/iresnet.py`` (module names, widths, strides), written out
independently of ``cqa_core``; so is the reference forward they are checked against.
"""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from cqa_core.checkpoint import init_from_checkpoint, load_model
from cqa_core.cli import main
from cqa_core.config import ModelConfig
from cqa_core.model import create_model, create_stem
from cqa_core.model.transfer import (
    freeze_stem,
    import_insightface,
    map_insightface_key,
    plan_import,
)

DEPTHS = {"r18": (2, 2, 2, 2), "r50": (3, 4, 14, 3), "r100": (3, 13, 30, 3)}
HEAD_KEYS = ["fc.weight", "fc.bias", "features.weight", "features.bias", "features.running_mean",
             "features.running_var", "features.num_batches_tracked"]


def _bn(prefix: str, c: int) -> dict[str, tuple[int, ...]]:
    return {f"{prefix}.{k}": (c,) for k in ("weight", "bias", "running_mean", "running_var")} | {
        f"{prefix}.num_batches_tracked": ()}


def insightface_shapes(depths: tuple[int, ...]) -> dict[str, tuple[int, ...]]:
    """Key -> shape of insightface IResNet(IBasicBlock, depths).state_dict() (num_features 512)."""
    s: dict[str, tuple[int, ...]] = {"conv1.weight": (64, 3, 3, 3), **_bn("bn1", 64), "prelu.weight": (64,)}
    inplanes = 64
    for i, (planes, n) in enumerate(zip((64, 128, 256, 512), depths, strict=True), 1):
        for j in range(n):
            cin, p = (inplanes if j == 0 else planes), f"layer{i}.{j}"
            s |= _bn(f"{p}.bn1", cin) | {f"{p}.conv1.weight": (planes, cin, 3, 3)} | _bn(f"{p}.bn2", planes)
            s |= {f"{p}.prelu.weight": (planes,), f"{p}.conv2.weight": (planes, planes, 3, 3)} | _bn(f"{p}.bn3", planes)
            if j == 0:  # every layer starts with stride 2, so block 0 has a downsample
                s |= {f"{p}.downsample.0.weight": (planes, cin, 1, 1)} | _bn(f"{p}.downsample.1", planes)
        inplanes = planes
    s |= _bn("bn2", 512) | {"fc.weight": (512, 512 * 7 * 7), "fc.bias": (512,)} | _bn("features", 512)
    return s


def random_state(depths: tuple[int, ...], seed: int = 0) -> dict[str, torch.Tensor]:
    """An insightface-layout state dict with random, well-scaled values."""
    g = torch.Generator().manual_seed(seed)
    out = {}
    for k, shape in insightface_shapes(depths).items():
        if k.endswith("num_batches_tracked"):
            out[k] = torch.tensor(1000)
        elif k.endswith("running_var"):
            out[k] = torch.rand(shape, generator=g) + 0.5
        elif k.endswith(("bias", "running_mean")):
            out[k] = 0.1 * torch.randn(shape, generator=g)
        elif k.endswith("prelu.weight"):
            out[k] = torch.full(shape, 0.25)
        elif len(shape) == 4:
            out[k] = torch.randn(shape, generator=g) * (1.0 / (shape[1] * shape[2] * shape[3])) ** 0.5
        else:
            out[k] = 1.0 + 0.1 * torch.randn(shape, generator=g)
    return out


def reference_forward(sd: dict[str, torch.Tensor], x: torch.Tensor, depths: tuple[int, ...]) -> torch.Tensor:
    """insightface IResNet.forward up to bn2, in eval mode, from its state dict alone."""
    def bn(t: torch.Tensor, p: str) -> torch.Tensor:
        return F.batch_norm(t, sd[f"{p}.running_mean"], sd[f"{p}.running_var"], sd[f"{p}.weight"], sd[f"{p}.bias"],
                            False, 0.0, 1e-5)

    x = F.prelu(bn(F.conv2d(x, sd["conv1.weight"], padding=1), "bn1"), sd["prelu.weight"])  # (B, 64, 112, 112)
    for i, n in enumerate(depths, 1):
        for j in range(n):
            p, stride = f"layer{i}.{j}", 2 if j == 0 else 1
            out = F.conv2d(bn(x, f"{p}.bn1"), sd[f"{p}.conv1.weight"], padding=1)
            out = F.prelu(bn(out, f"{p}.bn2"), sd[f"{p}.prelu.weight"])
            out = bn(F.conv2d(out, sd[f"{p}.conv2.weight"], stride=stride, padding=1), f"{p}.bn3")  # stride on conv2
            idn = x if j else bn(F.conv2d(x, sd[f"{p}.downsample.0.weight"], stride=2), f"{p}.downsample.1")
            x = out + idn
    return bn(x, "bn2")  # (B, 512, 7, 7)


def test_key_mapping_by_hand() -> None:
    assert map_insightface_key("layer3.7.conv2.weight") == "stages.2.7.conv2.weight"
    assert map_insightface_key("layer1.0.downsample.1.running_var") == "stages.0.0.downsample.1.running_var"
    assert map_insightface_key("module.bn1.bias") == "bn1.bias"
    assert map_insightface_key("prelu.weight") == "prelu.weight"
    assert map_insightface_key("fc.weight") is None and map_insightface_key("features.bias") is None


def test_r18_import_computes_insightface_forward(tmp_path: Path, capsys) -> None:
    sd = random_state(DEPTHS["r18"])
    torch.save(sd, tmp_path / "backbone.pth")
    out = tmp_path / "cqa_r18.safetensors"
    assert main(["import-backbone", "insightface", str(tmp_path / "backbone.pth"), "--stem", "r18",
                 "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    n_stem = len(sd) - len(HEAD_KEYS)
    assert f"mapped {n_stem} tensors" in printed and "fc.weight (512, 25088)" in printed
    model = load_model(out)
    assert model.config == ModelConfig(stem="r18", branches=4)
    assert len(model.stem.state_dict()) == n_stem
    x = torch.randn(2, 3, 112, 112, generator=torch.Generator().manual_seed(1))  # (2, 3, 112, 112)
    with torch.no_grad():
        got = model.stem(x)  # (2, 512, 7, 7)
        want = reference_forward(sd, x, DEPTHS["r18"])
    assert got.shape == (2, 512, 7, 7)
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4 * float(want.abs().max()))
    torch.manual_seed(0)
    fresh = create_model(ModelConfig(stem="r18", branches=4))
    torch.testing.assert_close(model.fc.weight, fresh.fc.weight)  # the head is seed 0's, not the file's fc
    hint = printed.split("Train its heads: ")[1].split(" (notebooks")[0]  # the printed command runs as is
    assert main([*shlex.split(hint)[1:], "--print-config"]) == 0
    config = json.loads(capsys.readouterr().out)
    assert (config["model"]["stem"], config["model"]["branches"]) == ("r18", 4)
    assert (config["init_from"], config["freeze_stem"]) == (str(out), True)


def test_r100_and_r50_layouts_without_allocating() -> None:
    for name in ("r50", "r100"):
        meta = {k: torch.empty(s, device="meta") for k, s in insightface_shapes(DEPTHS[name]).items()}
        with torch.device("meta"):
            stem = create_stem(name)
        report = plan_import(meta, stem)
        assert report.ok and sorted(report.unused) == sorted(HEAD_KEYS)
        assert len(report.mapped) == len(meta) - len(HEAD_KEYS) == len(stem.state_dict())
    r50 = {k: torch.empty(s, device="meta") for k, s in insightface_shapes(DEPTHS["r50"]).items()}
    with torch.device("meta"):
        report = plan_import(r50, create_stem("r100"))
    assert not report.ok and "stages.1.4.conv1.weight" in report.missing and not report.unexpected


def test_shape_mismatch_is_reported(tmp_path: Path, capsys) -> None:
    sd = random_state(DEPTHS["r18"])
    sd["layer2.0.conv1.weight"] = torch.zeros(128, 32, 3, 3)
    torch.save(sd, tmp_path / "b.pth")
    assert main(["import-backbone", "insightface", str(tmp_path / "b.pth"), "--stem", "r18",
                 "--out", str(tmp_path / "o.safetensors")]) == 2
    err = capsys.readouterr().err
    assert "stages.1.0.conv1.weight (128, 32, 3, 3) vs stem (128, 64, 3, 3)" in err
    assert not (tmp_path / "o.safetensors").exists()
    torch.save(random_state(DEPTHS["r18"]), tmp_path / "r18.pth")
    assert main(["import-backbone", "insightface", str(tmp_path / "r18.pth"), "--stem", "r50",
                 "--out", str(tmp_path / "o.safetensors")]) == 2
    assert "missing from the file" in capsys.readouterr().err


def test_ddp_prefix_and_training_checkpoint_wrapper(tmp_path: Path, capsys) -> None:
    sd = random_state(DEPTHS["r18"], seed=3)
    torch.save({"state_dict_backbone": {f"module.{k}": v for k, v in sd.items()}, "epoch": 7}, tmp_path / "c.pt")
    out = tmp_path / "o.safetensors"
    assert main(["import-backbone", "insightface", str(tmp_path / "c.pt"), "--stem", "r18", "--out", str(out),
                 "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert ["module.layer4.1.bn3.bias", "stages.3.1.bn3.bias"] in doc["mapped"] and doc["mismatched"] == []
    torch.testing.assert_close(load_model(out).stem.stages[3][1].bn3.bias, sd["layer4.1.bn3.bias"])


def _one_step(model, x: torch.Tensor) -> None:
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
    model.train()
    out = model(x)
    (out.embedding.pow(2).mean() + out.quality.mean()).backward()
    opt.step()


def test_fine_tune_with_the_stem_frozen_or_not(tmp_path: Path) -> None:
    sd = random_state(DEPTHS["r18"])
    model, _ = import_insightface(sd, ModelConfig(stem="r18", branches=2))
    x = torch.randn(4, 3, 112, 112, generator=torch.Generator().manual_seed(2))  # (4, 3, 112, 112)
    frozen = freeze_stem(model)
    stem_before = {k: v.clone() for k, v in frozen.stem.state_dict().items()}
    fc_before = frozen.fc.weight.detach().clone()
    _one_step(frozen, x)
    assert all(torch.equal(v, stem_before[k]) for k, v in frozen.stem.state_dict().items())  # weights and BN stats
    assert all(p.grad is None for p in frozen.stem.parameters())
    assert not frozen.stem.training and frozen.branches.training
    assert not torch.equal(frozen.fc.weight, fc_before)

    free, _ = import_insightface(sd, ModelConfig(stem="r18", branches=2))
    _one_step(free, x)
    assert not torch.equal(free.stem.conv1.weight, sd["conv1.weight"])
    assert not torch.equal(free.stem.bn1.running_mean, sd["bn1.running_mean"])


def test_init_from_checkpoint(tmp_path: Path) -> None:
    from cqa_core.checkpoint import save_model

    model, _ = import_insightface(random_state(DEPTHS["r18"]), ModelConfig(stem="r18", branches=2), seed=5)
    path = save_model(tmp_path / "m.safetensors", model)
    target = init_from_checkpoint(create_model(ModelConfig(stem="r18", branches=2)), path)
    assert all(torch.equal(a, b) for a, b in zip(target.state_dict().values(), model.state_dict().values(), strict=True))
    with pytest.raises(ValueError, match="branches"):
        init_from_checkpoint(create_model(ModelConfig(stem="r18", branches=4)), path)
