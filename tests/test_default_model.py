"""The bundled default model on real LFW faces: it loads with no path, separates same from
different people, and its similarity Grad-CAM points at pixels the similarity depends on."""

import numpy as np
import pytest
import torch

from benchmarks.faithfulness import run, summarize
from cqa_core.checkpoint import DEFAULT_WEIGHTS, load_default
from cqa_core.data.align import center_affine, load_image, warp
from cqa_core.data.pairs import pair_paths, read_pairs

pytestmark = pytest.mark.data


@pytest.fixture(scope="module")
def model():
    assert DEFAULT_WEIGHTS.exists(), "the default weights must ship with the package"
    return load_default()


def aligned(path) -> np.ndarray:
    """LFW photo -> (112, 112, 3) uint8 crop through the fixed LFW centre affine."""
    img = load_image(path)
    return warp(img, center_affine(img.shape[1], img.shape[0]))  # (112, 112, 3) uint8


def model_input(crop: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(crop).permute(2, 0, 1)[None].float().div(127.5).sub(1.0)  # (1, 3, 112, 112)


@pytest.fixture(scope="module")
def dev_pairs(lfw_root):
    pairs = read_pairs(lfw_root / "pairsDevTest.txt")
    same = [p for p in pairs if p.same][:20]
    diff = [p for p in pairs if not p.same][:20]
    return [(aligned(a), aligned(b), p.same) for p, (a, b) in zip(same + diff, pair_paths(same + diff, lfw_root), strict=True)]


def test_loads_in_eval_mode_as_the_light_b4_model(model):
    assert not model.training
    assert model.config.stem == "light" and model.config.branches == 4 and model.config.qan


def test_same_people_are_more_similar_than_different_people(model, dev_pairs):
    with torch.no_grad():
        sims = [torch.cosine_similarity(model(model_input(a)).embedding, model(model_input(b)).embedding).item()
                for a, b, _ in dev_pairs]
    same = np.array([s for s, (_, _, y) in zip(sims, dev_pairs, strict=True) if y])
    diff = np.array([s for s, (_, _, y) in zip(sims, dev_pairs, strict=True) if not y])
    # 20 + 20 pairs of the official View 1 test list; an untrained model scores ~0.5 here
    auc = (same[:, None] > diff[None, :]).mean()
    assert auc > 0.75, f"same-vs-different AUC {auc:.3f}"


@pytest.mark.slow
def test_gradcam_and_ig_delete_faster_than_flat_and_random_maps(model, dev_pairs):
    # Ties are broken at random, so an all-zero ("flat") map is just a random pixel order: it must
    # score like the random map within noise (with the old raster-order ties it deleted the top
    # rows first and beat random by ~0.05). A map that carries information must beat both.
    pairs = [(a, b) for a, b, same in dev_pairs[:8]]
    assert all(same for *_, same in dev_pairs[:8])  # same-person pairs: the similarity has something to lose
    rows = {r.method: r for r in summarize(run(model, pairs, methods=("gradcam", "ig", "random", "flat"),
                                               steps=16, draws=5))}
    flat = rows["flat"]
    assert abs(flat.deletion_vs_random) <= 3 * flat.deletion_vs_random_se + 0.01, flat
    assert abs(flat.insertion_vs_random) <= 3 * flat.insertion_vs_random_se + 0.01, flat
    for name in ("gradcam", "ig"):
        r = rows[name]
        assert r.deletion < min(rows["random"].deletion, flat.deletion), r  # deletes faster than chance
        assert r.deletion_vs_random + 2 * r.deletion_vs_random_se < 0, r  # and not by luck of 8 pairs
    assert rows["ig"].insertion > max(rows["random"].insertion, flat.insertion), rows["ig"]


def test_resolve_model_order(tmp_path, monkeypatch):
    import cqa_core.checkpoint as ckpt
    from cqa_core.checkpoint import resolve_model, save_model
    from cqa_core.config import ModelConfig
    from cqa_core.model import create_model
    from cqa_core.settings import Settings

    monkeypatch.delenv("CQA_CHECKPOINT", raising=False)
    assert resolve_model(Settings.from_env().checkpoint)[1:] == ("default model", False)
    other = save_model(tmp_path / "b2.safetensors", create_model(ModelConfig(stem="light", branches=2)))
    monkeypatch.setenv("CQA_CHECKPOINT", str(other))  # the environment beats the default ...
    model, label, untrained = resolve_model(Settings.from_env().checkpoint)
    assert model.config.branches == 2 and label == "weights b2.safetensors" and not untrained
    assert resolve_model(Settings.from_env(checkpoint=None).checkpoint)[0].config.branches == 2
    monkeypatch.delenv("CQA_CHECKPOINT")
    monkeypatch.setattr(ckpt, "DEFAULT_WEIGHTS", tmp_path / "missing.safetensors")
    with pytest.raises(FileNotFoundError, match="no model"):
        resolve_model()
    assert resolve_model(allow_untrained=True)[2] is True  # only when the caller allows it
