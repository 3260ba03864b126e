"""The stem-feature cache for frozen-stem training (issue 27, items 1 and 5).

The stem here is a hand-checkable one, a 16 x 16 average pool (112 -> 7), so a cached feature
is the mean of the normalised pixels under a cell: a face that is black on its left half and
white on its right half caches -1 in cells 0-2, 0 in cell 3 and +1 in cells 4-6 of every row,
reversed in a mirrored view.
"""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch import nn

from cqa_core.config import AugmentConfig, DataConfig, LossConfig, ModelConfig, TrainConfig
from cqa_core.model.backbones import StemCNN
from cqa_core.preprocess import normalize
from cqa_core.training import feature_cache
from cqa_core.training.feature_cache import CachedFeatures, FaceViews, StaleCache, prepare

CPU = torch.device("cpu")


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny tensors: one intra-op thread (two spin-wait each other on a busy 2-core machine, 100x slower)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


class HalfFaces(torch.utils.data.Dataset):
    """n faces, black left half and white right half (brightness 255 - 10 i), labels i % 3."""

    def __init__(self, n: int = 12) -> None:
        self.n, self.num_classes = n, 3

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        img = torch.zeros(3, 112, 112, dtype=torch.uint8)
        img[:, :, 56:] = 255 - 10 * i
        return img, i % 3


def pool_stem() -> nn.Module:
    """X = 16 x 16 mean of the normalised image: (B, 3, 112, 112) -> (B, 3, 7, 7)."""
    return nn.AvgPool2d(16)


def config(tmp_path: Path, **kw) -> TrainConfig:
    base = dict(model=ModelConfig(stem="light"), data=DataConfig(root=str(tmp_path), num_workers=0),
                freeze_stem=True, cache_views=2, cache_dir=str(tmp_path / "cache"), progress=False,
                tensorboard=False, eval_pairs=None, out_dir=str(tmp_path / "run"))
    base.update(kw)
    return TrainConfig(**base)


def arrays(root: Path) -> dict[str, np.ndarray]:
    return {name: np.load(root / f"{name}.npy") for name in ("features", "visibility", "labels")}


def test_cache_is_the_stem_of_each_view_by_hand(tmp_path: Path, capsys) -> None:
    c = config(tmp_path, cache_views=4, hflip=True)
    cache = prepare(pool_stem(), HalfFaces(), c, CPU, chunk=5)
    # 12 faces x 5 views x 3 x 7 x 7 x 2 bytes = 17,640 bytes
    assert "12 faces x 5 views x 3 x 7 x 7 x 2 bytes = 17.6 kB" in capsys.readouterr().err
    a = arrays(Path(c.cache_dir))
    assert a["features"].shape == (12, 5, 3, 7, 7) and a["features"].dtype == np.float16
    assert a["labels"].tolist() == [i % 3 for i in range(12)]
    np.testing.assert_array_equal(a["visibility"], 1.0)  # no degradation: everything visible
    for i in (0, 7):
        white = 2 * (255 - 10 * i) / 255 - 1  # normalised brightness of the right half
        row = np.array([-1, -1, -1, (white - 1) / 2, white, white, white], np.float32)  # 16-px cells
        for k in range(5):
            mirrored = k > 0 and np.random.default_rng([c.cache_seed, k, i]).random() < 0.5
            want = np.broadcast_to(row[::-1] if mirrored else row, (3, 7, 7))
            np.testing.assert_allclose(a["features"][i, k], want, atol=1e-3)  # fp16
    flips = [np.random.default_rng([0, k, i]).random() < 0.5 for i in range(12) for k in range(1, 5)]
    assert 0 < sum(flips) < len(flips)  # both kinds of view were checked
    x, label, extras = cache[(7, 123)]
    assert x.dtype == torch.float16 and x.shape == (3, 7, 7) and label == 1 and extras["visibility"].shape == (7, 7)


def test_degraded_views_equal_the_stem_of_the_loaders_degradation(tmp_path: Path) -> None:
    c = config(tmp_path, cache_views=2, augment=AugmentConfig(p_occluder=1.0, p_blur=0.5))
    stem = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.AvgPool2d(16))  # (B, 4, 7, 7)
    prepare(stem, HalfFaces(6), c, CPU, chunk=4)
    a = arrays(Path(c.cache_dir))
    views = FaceViews(HalfFaces(6), c.augment, 3, c.cache_seed, c.hflip)
    for i in range(6):
        images, vis, label = views[i]  # (3, 3, 112, 112), (3, 112, 112)
        with torch.no_grad():
            want = stem(normalize(images))  # (3, 4, 7, 7)
        torch.testing.assert_close(torch.from_numpy(a["features"][i]).float(), want, atol=2e-3, rtol=2e-3)
        pooled = torch.nn.functional.avg_pool2d(vis[:, None].float() / 255, 16)[:, 0]  # (3, 7, 7)
        torch.testing.assert_close(torch.from_numpy(a["visibility"][i]), pooled)
    assert (a["visibility"][:, 0] == 1).all() and (a["visibility"][:, 1:] < 1).any()  # occluded views
    assert not np.array_equal(a["features"][:, 0], a["features"][:, 1])


def test_killed_build_resumes_to_the_same_cache(tmp_path: Path) -> None:
    whole = config(tmp_path, cache_dir=str(tmp_path / "whole"), augment=AugmentConfig(p_occluder=0.5))
    prepare(pool_stem(), HalfFaces(), whole, CPU, chunk=4)

    killed = config(tmp_path, cache_dir=str(tmp_path / "killed"), augment=AugmentConfig(p_occluder=0.5))

    def die_after_first_chunk(faces: int) -> None:
        raise KeyboardInterrupt("killed")

    with pytest.raises(KeyboardInterrupt):
        prepare(pool_stem(), HalfFaces(), killed, CPU, chunk=4, on_chunk=die_after_first_chunk)
    assert json.loads((tmp_path / "killed" / "progress.json").read_text()) == {"faces": 4}
    written: list[int] = []
    prepare(pool_stem(), HalfFaces(), killed, CPU, chunk=4, on_chunk=written.append)
    assert written == [8, 12]  # continued at face 4, not from the start
    a, b = arrays(tmp_path / "whole"), arrays(tmp_path / "killed")
    for name in a:
        np.testing.assert_array_equal(a[name], b[name], err_msg=name)
    written.clear()
    prepare(pool_stem(), HalfFaces(), killed, CPU, chunk=4, on_chunk=written.append)
    assert written == []  # complete: reused as it is


def test_stale_cache_says_what_differs_and_rebuilds_on_request(tmp_path: Path) -> None:
    c = config(tmp_path)
    stem = nn.Conv2d(3, 2, 16, stride=16)  # (B, 2, 7, 7)
    prepare(stem, HalfFaces(), c, CPU)
    before = feature_cache.weights_hash(stem)
    with torch.no_grad():
        stem.bias += 1.0
    after = feature_cache.weights_hash(stem)
    with pytest.raises(StaleCache) as err:
        prepare(stem, HalfFaces(), c, CPU)
    msg = str(err.value)
    assert "\n" not in msg and f"stem weights differ: cache {before} vs model {after}" in msg
    assert "--rebuild-cache" in msg
    other = config(tmp_path, cache_views=3, augment=AugmentConfig(p_blur=1.0))
    with pytest.raises(StaleCache, match=r"augmentation differs: p_blur 0.0 vs 1.0 .*views differ: cache 2 vs run 3"):
        prepare(stem, HalfFaces(), other, CPU)
    with pytest.raises(StaleCache, match="data differs"):
        prepare(stem, HalfFaces(11), c, CPU)
    rebuilt = prepare(stem, HalfFaces(), config(tmp_path, rebuild_cache=True), CPU)
    meta = json.loads((Path(c.cache_dir) / "meta.json").read_text())
    assert meta["fingerprint"]["stem weights"] == after and len(rebuilt) == 12
    prepare(stem, HalfFaces(), c, CPU)  # the rebuilt cache now serves the plain run


def test_refuses_to_start_when_the_disk_cannot_hold_it(tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.setattr(feature_cache.shutil, "disk_usage", lambda p: SimpleNamespace(total=10**6, used=0, free=1000))
    c = config(tmp_path)
    with pytest.raises(OSError, match=r"not enough disk for the feature cache .* needs 17.7 kB, 1.0 kB is free"):
        prepare(pool_stem(), HalfFaces(), c, CPU)
    # 12 x 3 x 3 x 49 x 2 = 10,584 B of features, 12 x (3 x 49 x 4 + 8) = 7,152 B beside them
    assert "= 10.6 kB (+ 7.2 kB visibility maps and labels)" in capsys.readouterr().err
    assert not (Path(c.cache_dir) / "meta.json").exists()


def test_rebuild_cache_flag_sets_the_config() -> None:
    from cqa_core.cli import build_parser
    from cqa_core.commands.train import resolve_config

    args = build_parser().parse_args(["train", "--rebuild-cache", "--set", "freeze_stem=true"])
    assert resolve_config(args).rebuild_cache is True
    assert resolve_config(build_parser().parse_args(["train"])).rebuild_cache is False


def test_backbone_of_another_depth_is_one_clear_line() -> None:
    from test_import_backbone import insightface_shapes

    from cqa_core.model.backbones import IRESNET_DEPTHS
    from cqa_core.model.transfer import import_insightface

    with torch.device("meta"):
        r18 = {k: torch.empty(s) for k, s in insightface_shapes(IRESNET_DEPTHS["r18"]).items()}
        with pytest.raises(ValueError) as err:
            import_insightface(r18, ModelConfig(stem="r34"))
    msg = str(err.value)
    assert "\n" not in msg and len(msg) < 500 and "missing from the file" in msg
    assert "the file is an iResNet r18 (2/2/2/2 blocks per stage), a r34 stem has 3/4/6/3; import it with --stem r18" in msg


# -- training over the cache --------------------------------------------------------------------
def tiny_stem(name: str) -> StemCNN:
    """A 4-stage, 4-16 channel StemCNN: 112 -> 7 at a few MFLOPs (stands in for any stem)."""
    return StemCNN((4, 4, 8, 8, 16), (1, 1, 1, 1))


def test_training_over_the_cache_runs_the_head_only_and_resumes_exactly(tmp_path: Path, monkeypatch) -> None:
    from conftest import make_face_folder
    from test_train_resume import assert_bitwise_equal

    from cqa_core.training.data import build_dataset
    from cqa_core.training.trainer import Trainer

    monkeypatch.setattr("cqa_core.model.cqa_face.create_stem", tiny_stem)
    faces = make_face_folder(tmp_path / "faces", classes=4, per_class=6)

    def run(out: str, steps: int) -> TrainConfig:
        return config(tmp_path, data=DataConfig(root=str(faces), num_workers=0), out_dir=str(tmp_path / out),
                      batch_size=8, grad_accum=2, max_steps=steps, epochs=2, warmup_epochs=1.0, seed=5,
                      augment=AugmentConfig(p_occluder=0.5), loss=LossConfig(quality_weight=1.0),
                      model=ModelConfig(stem="light", branches=2, dropout=0.1))

    data = build_dataset(run("ref", 1))
    ref = Trainer(run("ref", 5), dataset=data)
    assert ref.cache is not None and ref.cache.views == 3
    calls = []
    ref.model.stem.register_forward_hook(lambda *a: calls.append(1))
    last = ref.fit()
    assert calls == [] and np.isfinite(last["loss"]) and "quality_loss" in last  # the stem never ran
    Trainer(run("run", 2), dataset=data).fit()
    resumed = Trainer(run("run", 5), dataset=data, resume="")
    assert resumed.step == 2
    resumed.fit()
    assert_bitwise_equal(tmp_path / "ref" / "model.safetensors", tmp_path / "run" / "model.safetensors")
    assert isinstance(resumed.cache, CachedFeatures)
