"""Maps as a person reads them (explain.pictures): stated scales, colours by sign, colour bars with units,
in cqa explain's PNGs and analysis.json, the Face and Pair tabs, the verdict line and the case sheet's escaping."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from cqa_core.explain import pictures
from cqa_core.explain.common import ExplainError
from cqa_core.explain.maprender import PER_MAP, SHARED_BRANCHES, SHARED_PAIR, ticks
from cqa_core.explain.report import write_report
from cqa_core.explain.result import FaceAnalysis, PairAnalysis
from tests.support.galleries import noise_gallery

OCCLUSION = pictures.MapKind("occlusion", True, "drop in cosine when occluded")
S = 112


def face(grey: int = 128) -> FaceAnalysis:
    """A face whose photo is its grey chip (identity alignment): what is drawn is the map alone."""
    chip = np.full((S, S, 3), grey, np.uint8)
    return FaceAnalysis(photo=chip, aligned=chip, affine=np.array([[1.0, 0, 0], [0, 1.0, 0]]),
                        align_method="identity", embedding=np.ones(4, np.float32), embedding_norm=2.0)


def halves(left: float, right: float) -> np.ndarray:
    m = np.zeros((S, S), np.float32)
    m[:, : S // 2], m[:, S // 2:] = left, right
    return m


def test_a_shared_pair_scale_spans_both_maps_and_per_map_its_own():
    a, b = halves(0.1, 0.4), halves(-0.2, 0.9)
    unsigned = pictures.MapKind("rise", False, "similarity-weighted mask mean")
    sa, sb = pictures.pair_scales([a, b], unsigned)
    assert sa == sb and (sa.vmin, sa.vmax) == pytest.approx((-0.2, 0.9))  # min over both, max over both
    assert sa.normalisation == SHARED_PAIR
    own = pictures.pair_scales([a, b], unsigned, PER_MAP)
    assert [v for s in own for v in (s.vmin, s.vmax)] == pytest.approx([0.1, 0.4, -0.2, 0.9])
    signed = pictures.pair_scales([a, b], OCCLUSION)
    assert (signed[0].vmin, signed[0].vmax) == pytest.approx((-0.9, 0.9))  # the largest |value| of either
    assert pictures.pair_scales([a], OCCLUSION, SHARED_PAIR)[0].normalisation == PER_MAP  # no partner: its own, said so
    with pytest.raises(ExplainError, match="shared across pair or per map"):
        pictures.pair_scales([a, b], OCCLUSION, SHARED_BRANCHES)


def test_branch_scales_share_the_maximum_over_branches():
    maps = np.stack([halves(0.0, 0.2), halves(0.1, 0.7), halves(0.05, 0.3)])
    shared = pictures.branch_scales(maps)
    assert len(set(shared)) == 1 and (shared[0].vmin, shared[0].vmax) == pytest.approx((0.0, 0.7))
    assert shared[0].normalisation == SHARED_BRANCHES and shared[0].unit == pictures.ATTENTION.unit
    assert [s.vmax for s in pictures.branch_scales(maps, PER_MAP)] == pytest.approx([0.2, 0.7, 0.3])


def test_a_signed_maps_colour_bar_ticks_are_vmin_zero_vmax():
    s = pictures.pair_scales([halves(0.1, -0.25), halves(0.05, 0.0)], OCCLUSION)[0]
    assert [v for v, _ in ticks(s, 3)] == [-0.25, 0.0, 0.25]
    assert [label for _, label in ticks(s, 3)] == ["-0.25", "0", "0.25"]


def test_the_registry_records_say_sign_and_unit():
    from cqa_core.explain import methods as registry

    occ = pictures.kind_of(registry.get("occlusion").record())
    assert occ == pictures.MapKind("occlusion", True, "drop in cosine when occluded")
    assert pictures.kind_of(registry.get("gradcam").record()).signed is False


def test_a_signed_occlusion_map_is_red_where_hiding_lowers_the_cosine_and_blue_where_it_raises_it(tmp_path):
    """The left half supports the match (the cosine drops by 0.1 when hidden), the right half opposes it
    (hiding it raises the cosine by 0.05): red left, blue right, on one scale -0.1 .. 0.1 for both faces."""
    occ = np.stack([halves(0.1, -0.05), halves(0.02, 0.0)])  # (2, S, S): face a, face b
    pa = PairAnalysis(a=face(), b=face(), similarity=0.5, maps={"occlusion": occ})
    files = write_report(pa, tmp_path, "toy", "a.png", "b.png", alpha=1.0, kinds={"occlusion": OCCLUSION})
    assert "a_occlusion.png" in files and "b_occlusion.png" in files
    picture = np.asarray(Image.open(tmp_path / "a_occlusion.png").convert("RGB")).astype(int)
    width = picture.shape[1]
    assert width == S  # pictures.framed below the picture: same width, bar and legend under it
    rows = picture[30:S]  # below the title strip, inside the map
    left, right = rows[:, 10], rows[:, S - 10]  # (h, 3)
    assert (left[:, 0] > left[:, 2] + 50).all() and (left[:, 0] > left[:, 1] + 50).all()  # +0.1: the top, dark red
    assert (right[:, 2] > right[:, 0] + 40).all()  # blue: -0.05, half-way down the blue side
    b_picture = np.asarray(Image.open(tmp_path / "b_occlusion.png").convert("RGB")).astype(int)
    assert np.abs(b_picture[60, S - 10] - 128).max() <= 1  # zero: faded to nothing, the photo's grey
    report = json.loads((tmp_path / "analysis.json").read_text())
    rec = {r["file"]: r for r in report["maps"]}["a_occlusion.png"]
    assert rec["method"] == "occlusion" and rec["normalisation"] == SHARED_PAIR and rec["signed"] is True
    assert (rec["vmin"], rec["vmax"]) == pytest.approx((-0.1, 0.1))  # shared with face b's 0.02 max
    assert rec["unit"] == "drop in cosine when occluded"


def test_framed_adds_bar_and_legend_of_the_same_width():
    s = pictures.pair_scales([halves(0.1, -0.05)], OCCLUSION)[0]
    picture = pictures.on_photo(face(), halves(0.1, -0.05), s, 0.5)
    out = pictures.framed(picture, s, "occlusion")
    assert out.shape[1] == S and out.shape[0] > S + 30 and out.dtype == np.uint8


def test_face_and_pair_tabs_state_and_switch_their_scales(tmp_path):
    from cqa_core.settings import Settings
    from workbench.start import open_workbench

    noise_gallery(tmp_path / "faces", 3)
    wb = open_workbench(Settings(faces=tmp_path / "faces"))
    fe, other = wb.view(0), wb.faces[wb.second.value]
    fe.source.value = "occlusion"
    assert wb.messages.last_error is None, wb.messages.widget.value
    occ = wb.session.analyse(wb.current, other, methods=("occlusion",)).maps["occlusion"]  # (2, S, S)
    bound = float(np.abs(occ).max())
    assert fe.main.scale.normalisation == SHARED_PAIR and fe.main.scale.vmax == pytest.approx(bound)
    assert "shared across pair" in fe.main.legend.value and "supports the match" in fe.main.legend.value
    assert bytes(fe.main.bar.value).startswith(b"\x89PNG")
    fe.scale.value = PER_MAP
    assert fe.main.scale.vmax == pytest.approx(float(np.abs(occ[0]).max()))
    attention = wb.session.analyse(wb.current).branches.attention
    assert [p.scale.vmax for p in fe.branch_maps] == pytest.approx([float(attention.max())] * len(attention))
    fe.branch_scale.value = PER_MAP
    assert [p.scale.vmax for p in fe.branch_maps] == pytest.approx(attention.max(axis=(1, 2)).tolist())
    assert "relation" in fe.relation.value and "Eq. 4" in fe.relation.value

    wb.tabs.selected_index = 1
    pair = wb.view(1)
    pair.source.value = "occlusion"
    sa, sb = (p.scale for p in pair.main.pictures)
    assert sa == sb and sa.vmax == pytest.approx(bound)
    pair.scale.value = PER_MAP
    assert [p.scale.vmax for p in pair.main.pictures] == pytest.approx(np.abs(occ).max(axis=(1, 2)).tolist())
    assert wb.current.name in pair.matrix.layout.yaxis.title.text
    assert other.name in pair.matrix.layout.xaxis.title.text
    sim = wb.session.analyse(wb.current, other, methods=()).similarity
    assert pair.loo.layout.shapes[0].y0 == pytest.approx(sim) and f"full cosine {sim:.3f}" in pair.loo.layout.title.text
    assert "negative" in pair.readings[1].value


def test_cqa_explain_says_why_there_is_no_verdict_or_gives_it_with_its_threshold(tmp_path, monkeypatch, capsys):
    from cqa_core.cli import main
    from cqa_core.evaluation.threshold import threshold_path
    from cqa_core.recognizers.load import load_recognizer

    monkeypatch.delenv("CQA_CHECKPOINT", raising=False)
    monkeypatch.setenv("CQA_DATA", str(tmp_path / "no-data"))  # no LFW here
    monkeypatch.setenv("CQA_CACHE", str(tmp_path / "cache"))
    rng = np.random.default_rng(5)
    a, b = tmp_path / "a.png", tmp_path / "b.png"
    for p in (a, b):
        Image.fromarray(rng.integers(0, 256, (112, 112, 3), dtype=np.uint8)).save(p)
    argv = ["explain", str(a), str(b), "--methods", "ig", "--out", str(tmp_path / "out")]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "no verdict: no threshold is cached for" in out and "no LFW View 1" in out
    assert "ig check, face a: the map accounts for" in out  # IG's check, in plain words
    sim = json.loads((tmp_path / "out" / "analysis.json").read_text())["similarity"]
    rec = load_recognizer(None)
    path = threshold_path(rec, tmp_path / "cache")
    path.parent.mkdir(parents=True)
    thr = sim - 0.01  # just below this pair's cosine: "same person"
    path.write_text(json.dumps({"threshold": thr, "accuracy": 0.9, "pairs": 1000, "source": "LFW View 1 pairsDevTest.txt"}))
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert f"verdict: same person (cosine {sim:.4f} >= threshold {thr:.4f}" in out
    assert "LFW View 1 pairsDevTest.txt: the cosine with the best accuracy (90.0%) over its 1000 pairs" in out


def test_the_case_sheet_escapes_every_name():
    from cqa_core.explain.sheet import SheetFacts, Verdict, case_sheet

    occ = np.stack([halves(0.1, -0.05), halves(0.02, 0.0)])
    pa = PairAnalysis(a=face(), b=face(), similarity=0.5, maps={"occlusion": occ})
    evil = "<img src=x onerror=alert(1)>.png"
    facts = SheetFacts(image=evil, other="b.png", model="<b>m</b>", digest="d", command=f"cqa explain '{evil}'",
                       date="today", verdict=Verdict(0.5, 0.4, "<script>alert(2)</script>"))
    page = case_sheet(pa, facts, {"occlusion": OCCLUSION})
    assert "<img src=x" not in page and "<script>" not in page and "<b>m</b>" not in page
    assert "&lt;img src=x onerror=alert(1)&gt;.png" in page and "same person" in page
    assert "http://" not in page and "https://" not in page  # everything inlined
