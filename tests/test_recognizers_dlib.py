"""dlib's ResNet as a black-box Recognizer: embeddings, its chip cut from MTCNN landmarks, errors,
and (slow, real data) black-box maps that beat a random map on deletion."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import pytest

from cqa_core.recognizers.base import RecognizerError

PAIRS = 10
"""LFW pairs of the slow deletion test (see its docstring for why 10 are enough)."""


@pytest.fixture(scope="module")
def dlib_rec():
    """dlib's ResNet recognizer; skips when the distill extra is not installed."""
    from cqa_core.recognizers.dlib_resnet import load_dlib

    try:
        return load_dlib()
    except RecognizerError as exc:
        pytest.skip(str(exc))


def lfw_faces(root: Path, pairs_file: str, n: int) -> list[tuple[np.ndarray, np.ndarray, bool]]:
    """``n`` pairs spread evenly over a pair list: (photo a, photo b, same) as uint8 RGB arrays."""
    from cqa_core.data.imageio import load_image
    from cqa_core.data.pairs import read_pairs, resolve_image
    from cqa_core.data.verification import subsample

    pairs = read_pairs(root / pairs_file)
    return [(load_image(resolve_image(root, q.name1, q.idx1)), load_image(resolve_image(root, q.name2, q.idx2)),
             q.same) for q in (pairs[i] for i in subsample(len(pairs), n))]


def test_embeds_n_by_128(dlib_rec):
    chips = np.random.default_rng(0).integers(0, 256, (3, 150, 150, 3), dtype=np.uint8)  # (3, 150, 150, 3)
    emb = dlib_rec.embed(chips)  # (3, 128)
    assert emb.shape == (3, 128) and emb.dtype == np.float32 and np.isfinite(emb).all()
    assert dlib_rec.kind == "dlib" and dlib_rec.name == "dlib ResNet" and not dlib_rec.whitebox
    assert dlib_rec.preprocess.size == 150 and dlib_rec.preprocess.template == "dlib"
    assert dlib_rec.preprocess.mean == (0.0, 0.0, 0.0) and dlib_rec.preprocess.std == (1.0, 1.0, 1.0)


def test_worker_processes_give_the_same_numbers(dlib_rec):
    from cqa_core.recognizers.dlib_resnet import embed_chips, load_dlib

    chips = np.random.default_rng(2).integers(0, 256, (20, 150, 150, 3), dtype=np.uint8)  # (20, 150, 150, 3)
    two = load_dlib(workers=2).embed(chips)  # (20, 128): 2 processes of 10 chips
    np.testing.assert_array_equal(two, embed_chips(chips))


def test_batch_equals_one_by_one(dlib_rec):
    chips = np.random.default_rng(1).integers(0, 256, (4, 150, 150, 3), dtype=np.uint8)  # (4, 150, 150, 3)
    batch = dlib_rec.embed(chips)  # (4, 128)
    single = np.concatenate([dlib_rec.embed(c[None]) for c in chips])  # (4, 128)
    np.testing.assert_allclose(batch, single, atol=1e-6)


def test_template_is_registered():
    from cqa_core.data.template import DLIB_TEMPLATE
    from cqa_core.recognizers.base import TEMPLATES
    from cqa_core.recognizers.dlib_resnet import PREPROCESS

    assert TEMPLATES["dlib"] is DLIB_TEMPLATE
    pts = PREPROCESS.points()  # (5, 2) chip pixels
    assert pts[0, 0] < pts[2, 0] < pts[1, 0] and pts[0, 1] < pts[2, 1] < pts[3, 1]  # eyes, nose, mouth in order


def test_missing_dlib_is_a_clear_error(monkeypatch):
    from cqa_core.recognizers import dlib_resnet

    monkeypatch.setitem(sys.modules, "dlib", None)  # `import dlib` now raises ImportError
    with pytest.raises(RecognizerError, match=r"pip install 'cqa-face\[distill\]'"):
        dlib_resnet.load_dlib()


def test_missing_model_files_are_a_clear_error(monkeypatch):
    import importlib.util

    from cqa_core.recognizers import dlib_resnet

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "face_recognition_models" else real(name, *a))
    with pytest.raises(RecognizerError, match=r"face_recognition_models: pip install 'cqa-face\[distill\]'"):
        dlib_resnet.load_dlib()


@pytest.mark.data
def test_chip_from_mtcnn_landmarks_matches_dlibs_own(dlib_rec, lfw_root):
    """On 6 LFW photos our chip (MTCNN + template) is close to dlib's own (HOG + shape predictor +
    get_face_chip) and dlib describes both as the same face.

    Measured: pixels differ 14.1 / 255 on average (12.3 over the 200 photos of
    benchmarks/dlib_template.py), descriptor distances 0.08-0.12, except one photo (0.40) where
    dlib's own HOG box gives a smaller, tilted chip; dlib's same-person threshold is 0.6.
    """
    from cqa_core.data.align import align_image
    from cqa_core.recognizers.base import cut_chip
    from cqa_core.recognizers.dlib_resnet import dlib_chip

    diffs, dists = [], []
    for a, b, _ in lfw_faces(lfw_root, "pairsDevTest.txt", 3):
        for photo in (a, b):
            face = align_image(photo)
            ours, affine = cut_chip(photo, face, dlib_rec.preprocess)  # (150, 150, 3), (2, 3)
            theirs, _ = dlib_chip(photo, face.landmarks)  # (150, 150, 3)
            diffs.append(np.abs(ours.astype(np.float64) - theirs).mean())
            e = dlib_rec.embed(np.stack([ours, theirs]))  # (2, 128)
            dists.append(np.linalg.norm(e[0] - e[1]))
    print(f"pixels differ {np.mean(diffs):.1f} / 255; descriptor distances {np.round(dists, 3)}")
    assert np.mean(diffs) < 20
    assert np.median(dists) < 0.15 and max(dists) < 0.6


@pytest.mark.slow
@pytest.mark.data
def test_blackbox_maps_beat_a_random_map_on_deletion(dlib_rec, lfw_root):
    """10 pairs spread over pairsDevTest.txt: mean deletion AUC of the registry's occlusion (7 x 7
    windows) and RISE (100 masks), dlib's default budgets, below a random map's (blurred baseline,
    10 steps, cos to the fixed partner; ``faithfulness.compare_maps`` on dlib's own chips).

    Measured over 20 such pairs (2026-12-06): random minus occlusion 0.012 (sd 0.009) and random minus
    RISE 0.018 (sd 0.009) per pair, positive on 19 of the 20; over 10 pairs the mean margins stay 4.4
    and 6.3 standard errors wide, at half the time (a pair costs ~14 s on two cores)."""
    from cqa_core.data.align import align_image
    from cqa_core.explain import methods
    from cqa_core.explain.faithfulness import compare_maps
    from cqa_core.recognizers.base import cut_chip

    assert methods.default_budget(dlib_rec) == (7, 100)
    rng = np.random.default_rng(0)
    aucs: dict[str, list[float]] = {"occlusion": [], "rise": [], "random": []}
    t0 = time.perf_counter()
    for a, b, _ in lfw_faces(lfw_root, "pairsDevTest.txt", PAIRS):
        ca, cb = (cut_chip(p, align_image(p), dlib_rec.preprocess)[0] for p in (a, b))  # (150, 150, 3) each
        maps = {m: methods.get(m).face_map(dlib_rec, ca, cb, methods.Context()) for m in ("occlusion", "rise")}
        maps["random"] = rng.random((150, 150))
        for name, c in compare_maps(dlib_rec, ca, cb, maps, baseline="blur", steps=10, draws=1).items():
            aucs[name].append(c.deletion_auc)
    mean = {k: float(np.mean(v)) for k, v in aucs.items()}
    print(f"deletion AUC over {PAIRS} pairs ({time.perf_counter() - t0:.0f} s): "
          + ", ".join(f"{k} {v:.3f}" for k, v in mean.items()))
    assert mean["occlusion"] < mean["random"] and mean["rise"] < mean["random"]
