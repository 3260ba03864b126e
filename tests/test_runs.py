"""A run is a folder: ``cqa eval --out`` on real LFW pairs, read back from its Parquet tables.

40 LFW View 2 pairs spread over the 10 folds, centre-cropped (no MTCNN: seconds), scored by the
bundled CQA-Face. The accuracy recomputed from ``pairs.parquet`` at its stored thresholds must be
``run.json``'s to the last digit; a rerun must come from the embedding cache without reading an
image; a masked run must reuse the clean faces and score only the masked ones.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from cqa_core.cli import main
from cqa_core.data.degrade import apply_mask
from cqa_core.evaluation.runs.plan import PairList, mask_kind
from cqa_core.evaluation.runs.store import FACE_COLUMNS, PAIR_COLUMNS
from cqa_core.evaluation.runs.tables import RunTables

pq = pytest.importorskip("pyarrow.parquet", reason="the runs extra (pyarrow) is not installed")
pytest.importorskip("duckdb", reason="the runs extra (duckdb) is not installed")
ARGS = ["--data", "lfw", "--limit", "40", "--align", "center"]


@pytest.fixture(scope="module")
def cache_env(tmp_path_factory, shared_data):
    """A fresh cache root for the module's runs (the data root stays the shared one)."""
    return {"CQA_CACHE": str(tmp_path_factory.mktemp("cache")), "CQA_DATA": str(shared_data)}


@pytest.fixture(scope="module")
def verify_run(lfw_root, cache_env, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "verify"
    with pytest.MonkeyPatch.context() as mp:
        for k, v in cache_env.items():
            mp.setenv(k, v)
        assert main(["eval", *ARGS, "--out", str(out)]) == 0
    return out


@pytest.mark.data
def test_accuracy_recomputed_from_the_pairs_equals_run_json(verify_run):
    run = json.loads((verify_run / "run.json").read_text())
    t = pq.read_table(verify_run / "pairs.parquet").to_pydict()
    assert set(t) == set(PAIR_COLUMNS) and len(t["pair_id"]) == run["n_pairs"] == 40
    score, thr, same, fold = (np.array(t[k]) for k in ("score", "threshold", "same", "fold"))
    for k in np.unique(fold):  # the stored threshold is the fold's, from run.json
        assert (thr[fold == k] == run["fold_thresholds"][str(k)]).all()
    correct = (score >= thr) == same
    assert (correct == np.array(t["correct"])).all()
    accs = [float(correct[fold == k].mean()) for k in np.unique(fold)]
    assert float(np.mean(accs)) == run["accuracy"]  # to the last digit
    assert RunTables(verify_run).accuracy() == run["accuracy"]
    # the margin is the distance to the threshold; an error is a negative correct-side margin
    assert np.allclose(np.array(t["margin"]), score - thr)
    assert ((np.array(t["correct_margin"]) < 0) == ~correct).all()


@pytest.mark.data
def test_scores_are_the_cosines_of_the_stored_embeddings(verify_run):
    t = pq.read_table(verify_run / "pairs.parquet", columns=["face1", "face2", "score"]).to_pydict()
    emb = np.load(verify_run / "embeddings.npy", mmap_mode="r").astype(np.float64)  # (F, D) fp16 on disk
    assert np.load(verify_run / "embeddings.npy", mmap_mode="r").dtype == np.float16
    e = emb / np.linalg.norm(emb, axis=1, keepdims=True)
    cos = (e[t["face1"]] * e[t["face2"]]).sum(1)
    assert np.abs(cos - np.array(t["score"])).max() < 2e-3  # fp16 rounding only


@pytest.mark.data
def test_faces_table_holds_qan_readings_for_cqa_face(verify_run):
    run = json.loads((verify_run / "run.json").read_text())
    f = pq.read_table(verify_run / "faces.parquet").to_pydict()
    assert set(f) == set(FACE_COLUMNS) and len(f["face_id"]) == run["n_faces"] == 80
    assert set(f["quality_kind"]) == {"qan"} and set(f["alignment"]) == {"center"}
    bq = np.array(f["branch_quality"])  # (F, b)
    assert bq.shape == (80, 4) and np.isfinite(f["cal"]).all()
    q = np.array(f["quality"])  # the overall QAN quality is a weighted mean of the branch qualities
    assert (q >= bq.min(1) - 1e-5).all() and (q <= bq.max(1) + 1e-5).all()
    assert all(p.endswith(".jpg") and i in p for p, i in zip(f["path"], f["identity"], strict=True))
    assert run["model"]["digest"] and run["model"]["spec"] == "default" and run["pairs_digest"] and run["duration_s"] > 0
    p = pq.read_table(verify_run / "pairs.parquet", columns=["quality1", "face1"]).to_pydict()
    assert np.allclose(np.array(p["quality1"]), q[p["face1"]])


@pytest.mark.data
def test_a_rerun_reads_no_image_and_a_masked_run_scores_only_its_masks(verify_run, cache_env, tmp_path,
                                                                        monkeypatch):
    for k, v in cache_env.items():
        monkeypatch.setenv(k, v)

    def no_images(self):
        raise AssertionError("a rerun from the cache must not load images")

    with monkeypatch.context() as mp:
        mp.setattr(PairList, "pairset", no_images)
        assert main(["eval", *ARGS, "--out", str(tmp_path / "again")]) == 0
    again = json.loads((tmp_path / "again" / "run.json").read_text())
    assert again["faces"] == {"faces": 80, "from_cache": 80, "scored": 0}
    first = pq.read_table(verify_run / "pairs.parquet", columns=["score"]).column(0).to_numpy()
    assert (pq.read_table(tmp_path / "again" / "pairs.parquet", columns=["score"]).column(0).to_numpy() == first).all()

    assert main(["eval", *ARGS, "--protocol", "masked-m2n", "--out", str(tmp_path / "m2n")]) == 0
    m2n = json.loads((tmp_path / "m2n" / "run.json").read_text())
    clean = len(set(pq.read_table(verify_run / "pairs.parquet", columns=["path1"]).column(0).to_pylist()))
    assert m2n["faces"] == {"faces": clean + 40, "from_cache": clean, "scored": 40}
    t = pq.read_table(tmp_path / "m2n" / "pairs.parquet").to_pydict()
    assert set(t["edit1"]) == {"none"} and set(t["edited_side"]) == {"second"} and set(t["edit"]) == {"mask random"}
    assert t["edit2"] == [f"mask {mask_kind('random', k + 1)}" for k in range(40)]

    # 60 pairs after 40: only the photos the 40 did not use are embedded
    from cqa_core.evaluation.protocols import Options
    from cqa_core.evaluation.runs.plan import pair_list
    from cqa_core.settings import AlignMode, Settings

    places = Settings.from_env()
    keys = [set(pair_list("lfw", Options(limit=n, align=AlignMode.CENTER, places=places)).keys) for n in (40, 60)]
    assert main(["eval", "--data", "lfw", "--limit", "60", "--align", "center", "--out", str(tmp_path / "60")]) == 0
    sixty = json.loads((tmp_path / "60" / "run.json").read_text())["faces"]
    assert sixty == {"faces": len(keys[1]), "from_cache": len(keys[0] & keys[1]), "scored": len(keys[1] - keys[0])}
    assert 0 < sixty["scored"] < sixty["faces"]


def test_mask_kind_names_the_mask_apply_mask_draws(shared_data):
    """The random mask of a seed looks most like the named kind (same seed; only the ~1 px jitter differs)."""
    from cqa_core.data.degrade import MASK_KINDS

    face = np.full((112, 112, 3), 128, np.uint8)
    root = shared_data / "masks"
    for seed in (1, 2, 3, 7):
        drawn = mask_kind("random", seed)
        random = apply_mask(face, "random", seed=seed, mask_root=root)[0].astype(float)
        diff = {k: np.abs(random - apply_mask(face, k, seed=seed, mask_root=root)[0]).mean() for k in MASK_KINDS}
        assert min(diff, key=diff.get) == drawn, (seed, diff)
    assert mask_kind("N95", 5) == "N95"


@pytest.mark.data
def test_a_recognizer_without_branches_reports_the_embedding_norm(lfw_root, tmp_path):
    from cqa_core.data.verification import load_pairset
    from cqa_core.evaluation.protocols import Options
    from cqa_core.evaluation.runs.record import record_run
    from cqa_core.recognizers.base import Recognizer
    from cqa_core.settings import AlignMode, Settings

    def mean_colour(chips: np.ndarray) -> np.ndarray:
        return chips.reshape(len(chips), -1, 3).mean(1).astype(np.float32)  # (N, 3)

    rec = Recognizer(name="mean colour", kind="torch", embed_fn=mean_colour)
    places = Settings(data_root=lfw_root.parent)
    opts = Options(limit=12, align=AlignMode.CENTER, places=places)
    result, _ = record_run(rec, "lfw", "verify", opts, tmp_path / "run", cache=None, progress=False)
    f = pq.read_table(tmp_path / "run" / "faces.parquet").to_pydict()
    assert "branch_quality" not in f and set(f["quality_kind"]) == {"norm"}
    images = load_pairset("lfw", limit=12, align="center", places=places).images
    want = mean_colour(images[np.array(f["image"])])  # (F, 3) worked out from the crops themselves
    assert np.allclose(f["norm"], np.linalg.norm(want, axis=1), rtol=1e-6) and f["quality"] == f["norm"]
    emb = np.load(tmp_path / "run" / "embeddings.npy").astype(np.float32)
    assert np.allclose(emb, want, rtol=1e-3)
    assert json.loads((tmp_path / "run" / "run.json").read_text())["accuracy"] == result["accuracy"]


@pytest.mark.data
def test_cqa_explain_prints_the_verdict_calibrated_on_a_run(verify_run, lfw_root, cache_env, tmp_path, capsys,
                                                              monkeypatch):
    from cqa_core.commands import explain_case

    for k, v in cache_env.items():
        monkeypatch.setenv(k, v)
    # the verdict at the model's own threshold needs its LFW View 1 threshold (minutes in a fresh cache): not here
    monkeypatch.setattr(explain_case, "model_threshold", lambda rec, settings: (None, "no verdict: not computed here"))
    a, b = (lfw_root / "Aaron_Peirsol" / f"Aaron_Peirsol_000{i}.jpg" for i in (1, 2))
    assert main(["explain", str(a), str(b), "--methods", "gradcam", "--out", str(tmp_path / "why"),
                 "--reference", str(verify_run)]) == 0
    out = capsys.readouterr().out
    sim = float(out.split("similarity ")[1].split()[0].rstrip(";"))
    cal = json.loads((verify_run / "calibration.json").read_text())
    word = "same person" if sim >= cal["threshold"] else "different people"
    assert f"{word}, " in out and "(calibrated on LFW, 40 pairs; platt; likelihood ratio " in out
    assert f"threshold {cal['threshold']:.4f}" in out


def test_face_plans_of_each_protocol_by_hand():
    from cqa_core.evaluation.protocols import Options
    from cqa_core.evaluation.runs.plan import face_plan

    # 4 images, 3 pairs: (0, 1), (2, 3), (0, 3)
    pl = PairList("x", ["a", "b", "c", "d"], ["a", "b", "c", "d"], [""] * 4, np.array([0, 2, 0]), np.array([1, 3, 3]),
                  np.array([True, False, False]), np.array([0, 1, 2]))
    v = face_plan(pl, "verify", Options())
    assert v.image.tolist() == [0, 1, 2, 3] and (v.seed == -1).all()
    assert v.face1.tolist() == [0, 2, 0] and v.face2.tolist() == [1, 3, 3] and v.edited_side == "none"
    m2n = face_plan(pl, "masked-m2n", Options(mask="N95"))
    # clean first faces (images 0 and 2), then pair k's masked second face with seed k
    assert m2n.image.tolist() == [0, 2, 1, 3, 3] and m2n.seed.tolist() == [-1, -1, 0, 1, 2]
    assert m2n.face1.tolist() == [0, 1, 0] and m2n.face2.tolist() == [2, 3, 4]
    assert m2n.edit == ["none", "none", "mask N95", "mask N95", "mask N95"]
    m2m = face_plan(pl, "masked-m2m", Options(mask="N95"))
    # no clean face: second faces with seeds 0..2, first faces with seeds 3..5 (offset N, as the protocol draws)
    assert m2m.image.tolist() == [1, 3, 3, 0, 2, 0] and m2m.seed.tolist() == [0, 1, 2, 3, 4, 5]
    assert m2m.face1.tolist() == [3, 4, 5] and m2m.face2.tolist() == [0, 1, 2] and m2m.edited_side == "both"
    cq = face_plan(pl, "cross-quality", Options(degrade="blur", severity=2))
    assert cq.edit[-3:] == ["blur 2"] * 3 and cq.edited_side == "second"


def test_protocols_without_pairs_are_refused_in_one_line(tmp_path, capsys):
    assert main(["eval", "--protocol", "identify", "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert "a run keeps pairs: --out works with verify, masked-m2n" in err and err.count("\n") == 1
    assert not (tmp_path / "r").exists()


@pytest.mark.data
def test_a_masked_run_scores_the_faces_the_protocol_scores(lfw_root, tmp_path):
    """Each masked face is drawn with its pair's seed: the run's aggregates are ``evaluate``'s."""
    from cqa_core.evaluation.protocols import Options, evaluate
    from cqa_core.evaluation.runs.record import record_run
    from cqa_core.recognizers.load import load_recognizer
    from cqa_core.settings import AlignMode, Settings

    rec = load_recognizer("default")
    opts = Options(limit=24, align=AlignMode.CENTER, places=Settings(data_root=lfw_root.parent))
    for protocol in ("masked-m2m", "cross-quality"):
        want, _ = evaluate(rec, "lfw", protocol, opts)
        got, _ = record_run(rec, "lfw", protocol, opts, tmp_path / protocol, cache=None, progress=False)
        assert got["auc"] == pytest.approx(want["auc"], abs=1e-6), protocol
        assert got["tar_at_far"] == want["tar_at_far"] and got["fold_accuracies"] == want["fold_accuracies"]
        assert got["fold_thresholds"] == pytest.approx(want["fold_thresholds"], abs=1e-5)
