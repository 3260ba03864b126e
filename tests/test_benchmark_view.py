"""The Benchmark tab without a browser, on synthetic runs (``runs.synthetic``): answers recomputed with numpy."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("duckdb", reason="the runs extra is not installed")
pytest.importorskip("ipydatagrid", reason="the workbench extra is not installed")
import pyarrow.parquet as pq  # noqa: E402

from cqa_core.evaluation.runs.browse import error_rates, errors_page, score_bins  # noqa: E402
from cqa_core.evaluation.runs.compare import compare_runs  # noqa: E402
from cqa_core.evaluation.runs.synthetic import synthetic_run  # noqa: E402
from cqa_core.evaluation.runs.tables import RunTables  # noqa: E402
from workbench.views.benchmark import BenchmarkPanel, run_face, run_model  # noqa: E402
from workbench.views.common import Messages  # noqa: E402

PAIRS, FACES = 3000, 600


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Two synthetic runs of the same pairs (B's genuine scores shifted up) in one runs folder."""
    root = tmp_path_factory.mktemp("runs")
    synthetic_run(root / "a", pairs=PAIRS, faces=FACES, name="model A")
    synthetic_run(root / "b", pairs=PAIRS, faces=FACES, name="model B", shift=0.08)
    return root


def pairs_of(folder) -> dict[str, np.ndarray]:
    t = pq.read_table(folder / "pairs.parquet")
    return {c: t.column(c).to_numpy() for c in ("pair_id", "score", "same", "correct", "outcome", "correct_margin")}


class Opened:
    """Records what the panel asks the dashboard to open."""

    def __init__(self) -> None:
        self.calls: list[tuple] = []

    def __call__(self, face, other, model, beside) -> None:
        self.calls.append((face, other, model, beside))


@pytest.fixture()
def panel(runs):
    opened = Opened()
    p = BenchmarkPanel(Messages(debug=True), runs, opened)
    p.opened = opened
    p.show()
    p.pick(str(runs / "a"))
    assert p.messages.last_error is None, p.messages.widget.value
    return p


def test_error_table_starts_at_the_worst_margin_error(panel, runs):
    t = pairs_of(runs / "a")
    wrong = ~t["correct"]
    assert panel.table.rows["pair_id"][0] == t["pair_id"][wrong][np.argmin(t["correct_margin"][wrong])]
    assert panel.table.total == int(wrong.sum()) > 50
    panel.table.kind.value = "false accept"
    fa = t["outcome"] == "false accept"
    worst_fa = t["pair_id"][fa][np.argmin(t["correct_margin"][fa])]
    assert panel.table.rows["pair_id"][0] == worst_fa
    assert set(panel.table.rows["outcome"]) == {"false accept"}
    assert panel.table.total == int(fa.sum())
    margins = panel.table.rows["correct_margin"]
    assert margins == sorted(margins)  # worst first


def test_paging_returns_fifty_rows_in_order(panel, runs):
    t = pairs_of(runs / "a")
    wrong = ~t["correct"]
    order = t["pair_id"][wrong][np.lexsort((t["pair_id"][wrong], t["correct_margin"][wrong]))]
    first = list(panel.table.rows["pair_id"])
    assert len(first) == 50 and first == order[:50].tolist()
    assert len(panel.table.grid.data) == 50  # the grid holds the page, not the run
    panel.table.next.click()
    assert panel.table.offset == 50 and list(panel.table.rows["pair_id"]) == order[50:100].tolist()
    panel.table.prev.click()
    assert list(panel.table.rows["pair_id"]) == first


def test_grid_sort_and_filter_run_on_the_whole_run(panel, runs):
    t = pairs_of(runs / "a")
    wrong = ~t["correct"]
    # the grid's column menu: sort by score, highest first, among the errors of genuine... all errors
    panel.table.grid.transform([{"type": "sort", "column": "score", "desc": True}])
    assert panel.table.rows["pair_id"][0] == t["pair_id"][wrong][np.argmax(t["score"][wrong])]
    panel.table.grid.transform([{"type": "filter", "column": "score", "operator": "<", "value": 0.2}])
    want = wrong & (t["score"] < 0.2)
    assert panel.table.total == int(want.sum()) and max(panel.table.rows["score"]) < 0.2
    panel.table.grid.transform([])
    assert panel.table.total == int(wrong.sum())


def test_clicking_a_row_opens_that_pair_under_the_runs_model(panel):
    row = panel.table.row(0)
    panel.table._on_click({"region": "body", "primary_key_row": 0, "row": 0, "column": "score",
                           "column_index": 3, "cell_value": row["score"]})
    face, other, model, beside = panel.opened.calls[-1]
    assert face.source == row["path1"] and other.source == row["path2"]
    assert model == run_model(panel.run.meta) == "default" and beside is None
    panel.table._on_click({"region": "column-header", "primary_key_row": None})
    assert len(panel.opened.calls) == 1  # a header click opens nothing


def test_run_model_and_face():
    assert run_model({"model": {"kind": "dlib", "source": "/x/dlib_face.dat"}}) == "dlib"
    assert run_model({"model": {"kind": "onnx", "source": "/m/a.onnx"}}) == "/m/a.onnx"
    assert run_model({"model": {"kind": "cqa-face", "source": None}}) == "default"
    f = run_face("/d/lfw/George_Bush/George_Bush_0003.jpg", "center")
    assert f.name == "George Bush 0003" and f.align.value == "center"


def test_curves_and_histograms_match_numpy(panel, runs):
    t = pairs_of(runs / "a")
    b = score_bins(RunTables(runs / "a"))
    assert b.genuine.sum() == t["same"].sum() and b.impostor.sum() == (~t["same"]).sum()
    far, frr, tar, thr = error_rates(b)
    for i in (10, 100, 150):  # at a bin edge, by hand
        assert far[i] == pytest.approx(np.mean(t["score"][~t["same"]] >= thr[i]))
        assert frr[i] == pytest.approx(np.mean(t["score"][t["same"]] < thr[i]))
    assert panel.roc.layout.xaxis.type == "log" and panel.det.layout.xaxis.type == "log"
    assert len(panel.hist.data) == 2 and len(panel.hist.layout.shapes) == 1


def test_accuracy_by_decile_matches_numpy(panel, runs):
    d = pq.read_table(runs / "a" / "pairs.parquet", columns=["quality_decile", "correct"])
    dec, ok = d.column(0).to_numpy(), d.column(1).to_numpy()
    bars = panel.by["quality_decile"].data[0]
    assert list(bars.x) == [str(i) for i in range(1, 11)]
    assert list(bars.y) == pytest.approx([ok[dec == i].mean() for i in range(1, 11)])
    assert bars.y[0] < bars.y[-1]  # the synthetic run errs where quality is low


def test_two_runs_scatter_one_point_per_pair_and_mcnemar(panel, runs):
    panel.other.value = str(runs / "b")
    assert panel.messages.last_error is None, panel.messages.widget.value
    pts = panel.compare.scatter.data
    ids = np.concatenate([np.asarray(tr.customdata) for tr in pts])
    assert len(ids) == PAIRS and set(ids.tolist()) == set(range(PAIRS))
    assert all(tr.type == "scattergl" for tr in pts)
    c = compare_runs(runs / "a", runs / "b")
    assert f"{c.p_value:.4g}" in panel.compare.stats.value
    lists = panel.compare.grids["only B right"].data
    assert len(lists) == min(200, c.table["only B right"])
    # a point opens the pair under both recognizers
    pid = int(pts[0].customdata[0])
    panel.compare.open_pair_id(pid)
    face, other, model, beside = panel.opened.calls[-1]
    row = RunTables(runs / "a").pair(pid)
    assert (face.source, other.source) == (row["path1"], row["path2"]) and beside == "default"
    panel.other.value = ""
    assert panel.compare.widget.layout.display == "none"


def test_page_query_refuses_unknown_columns(runs):
    t = RunTables(runs / "a")
    with pytest.raises(ValueError, match="no column"):
        errors_page(t, sort=[("nope", False)])
    assert len(errors_page(t, "all pairs", limit=7)["pair_id"]) == 7


def test_no_runs_says_how_to_make_one(tmp_path):
    p = BenchmarkPanel(Messages(), tmp_path / "none", Opened())
    p.show()
    assert "cqa eval --out" in p.summary.value
    assert p.body.children == ()  # no empty chart is drawn


def test_the_charts_join_the_page_with_the_first_run(panel):
    assert panel.roc in panel.body.children[0].children and panel.table.widget in panel.body.children
    assert panel.other.index == 0 and panel.other.label == "no second run"  # shown, not a blank box


@pytest.mark.slow
def test_face_map_is_computed_once_and_opens_faces(tmp_path):
    synthetic_run(tmp_path / "small", pairs=200, faces=80, name="small")
    opened = Opened()
    p = BenchmarkPanel(Messages(debug=True), tmp_path, opened)
    p.show()
    p.map.compute()
    assert p.messages.last_error is None, p.messages.widget.value
    assert (tmp_path / "small" / "map.npz").is_file()
    assert len(p.map.fig.data[0].x) == 80
    p.map.colour.value = "quality"
    assert list(p.map.fig.data[0].marker.color) == pytest.approx(p.map.rows["quality"])
    p.map._on_point(None, type("P", (), {"point_inds": [5]})(), None)
    face, other, _, _ = opened.calls[-1]
    assert other is None and face.source == p.map.rows["path"][5]


def test_runs_folder_setting_reaches_the_kernels(tmp_path):
    from cqa_core.settings import Settings
    from workbench.serve import kernel_env

    assert Settings(cache_root=tmp_path).runs_dir == tmp_path / "runs"
    assert Settings.from_env({"CQA_RUNS": str(tmp_path / "mine")}).runs_dir == tmp_path / "mine"
    assert kernel_env(Settings(runs=tmp_path / "mine"), base={})["CQA_RUNS"] == str(tmp_path / "mine")


def test_reliability_diagram_shows_the_saved_calibration_and_its_ece(tmp_path):
    from cqa_core.evaluation.runs.calibration import save_calibration

    synthetic_run(tmp_path / "c", pairs=600, faces=200, name="model C")
    p = BenchmarkPanel(Messages(debug=True), tmp_path, Opened())
    p.show()
    p.pick(str(tmp_path / "c"))
    assert "no saved calibration" in p.reliability.layout.title.text
    cal = save_calibration(tmp_path / "c")
    p.pick(str(tmp_path / "c"))
    assert p.messages.last_error is None, p.messages.widget.value
    curve = p.reliability.data[1]
    filled = [r for r in cal.reliability if r["count"]]
    assert list(curve.x) == [r["mean_probability"] for r in filled] and list(curve.y) == [r["fraction_same"] for r in filled]
    assert f"ECE {cal.ece:.3f}" in p.reliability.layout.title.text
