"""The case sheet (``cqa explain a b --sheet out.html``) in headless Chromium: self-contained (no request
leaves the page), every picture loads, the verdict with its threshold, and a print layout of one A4 page."""

from __future__ import annotations

import json
import re

import pytest

from tests.support.headless import CHROMIUM, launch_chromium

pytestmark = [pytest.mark.browser, pytest.mark.data]

A4_CONTENT_PX = (718, 1047)  # 190 x 277 mm at 96 px an inch: A4 inside the sheet's 10 mm page margins
METHODS = ("gradcam", "occlusion", "similarity-map")


def pdf_pages(data: bytes) -> int:
    return len(re.findall(rb"/Type\s*/Page(?![s\w])", data))


@pytest.fixture(scope="module")
def sheet(lfw_root, tmp_path_factory):
    """A case sheet of two photos of one person by the default model, at a threshold set by hand (0.3)."""
    if CHROMIUM is None:
        pytest.skip("no chromium on PATH (.ci/run installs Debian's: apt-get install -y chromium)")
    pytest.importorskip("playwright.sync_api", reason="playwright python package not installed")
    from cqa_core.cli import main
    from cqa_core.evaluation.threshold import threshold_path
    from cqa_core.recognizers.load import load_recognizer

    tmp = tmp_path_factory.mktemp("sheet")
    mp = pytest.MonkeyPatch()
    mp.delenv("CQA_CHECKPOINT", raising=False)
    mp.setenv("CQA_CACHE", str(tmp / "cache"))
    rec = load_recognizer(None)
    path = threshold_path(rec, tmp / "cache")
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"threshold": 0.3, "accuracy": 0.87, "pairs": 1000, "source": "LFW View 1 pairsDevTest.txt"}))
    a, b = (lfw_root / "Aaron_Peirsol" / f"Aaron_Peirsol_000{i}.jpg" for i in (1, 2))
    out = tmp / "case.html"
    try:
        assert main(["explain", str(a), str(b), "--methods", ",".join(METHODS), "--out", str(tmp / "why"),
                     "--sheet", str(out)]) == 0
    finally:
        mp.undo()
    report = json.loads((tmp / "why" / "analysis.json").read_text())
    return out, report, rec.digest


def test_the_sheet_is_self_contained_and_says_what_made_it(sheet):
    from playwright.sync_api import sync_playwright

    out, report, digest = sheet
    sim = report["similarity"]
    with sync_playwright() as p:
        browser = launch_chromium(p)
        try:
            page = browser.new_page(viewport={"width": 900, "height": 1200})
            requests: list[str] = []
            page.on("request", lambda r: requests.append(r.url))
            page.goto(out.as_uri())
            page.wait_for_load_state("load")
            left = [u for u in requests if not u.startswith("data:") and u != out.as_uri()]
            assert left == []  # nothing asked of the network or the disk beyond the page itself
            images = page.evaluate("[...document.images].map(i => [i.complete, i.naturalWidth, i.src.slice(0, 22)])")
            assert len(images) == 2 + 2 * 2 * len(METHODS)  # two photos; per method and face a map and its colour bar
            assert all(done and width > 0 and src == "data:image/png;base64," for done, width, src in images)
            text = page.inner_text("body")
        finally:
            browser.close()
    assert ("same person" if sim >= 0.3 else "different people") in text
    assert f"cosine {sim:.4f} {'≥' if sim >= 0.3 else '<'} threshold 0.3000" in text
    assert "LFW View 1 pairsDevTest.txt: the cosine with the best accuracy (87.0%)" in text
    assert digest in text and "default model" in text and "--sheet" in text and str(out) in text
    for method in METHODS:
        assert method in text
    assert "shared across pair" in text and "red > 0 supports the match" in text
    assert "rows: Aaron_Peirsol_0001.jpg" in text and f"sum {sum(map(sum, report['decomposition'])):.4f}" in text


def test_the_print_layout_fits_one_a4_page(sheet):
    from playwright.sync_api import sync_playwright

    out, _, _ = sheet
    with sync_playwright() as p:
        browser = launch_chromium(p)
        try:
            page = browser.new_page(viewport={"width": A4_CONTENT_PX[0], "height": A4_CONTENT_PX[1]})
            page.goto(out.as_uri())
            page.emulate_media(media="print")
            box = page.evaluate("(() => { const r = document.querySelector('.sheet').getBoundingClientRect();"
                                " return [r.width, r.height]; })()")
            overflow = page.evaluate("""(() => { const r = document.querySelector('.sheet').getBoundingClientRect();
                return [...document.querySelectorAll('.sheet *')].filter(e => e.getBoundingClientRect().right > r.right + 1)
                    .map(e => e.tagName + '.' + e.className); })()""")
            wide = page.evaluate("document.documentElement.scrollWidth <= document.documentElement.clientWidth")
            pdf = page.pdf(prefer_css_page_size=True, print_background=True)
        finally:
            browser.close()
    assert overflow == [] and wide  # nothing sticks out sideways
    assert box[0] <= A4_CONTENT_PX[0] + 1 and box[1] <= A4_CONTENT_PX[1], box
    assert pdf_pages(pdf) == 1
    written = out.with_suffix(".pdf")  # cqa explain printed it through the same Chromium
    assert written.is_file() and pdf_pages(written.read_bytes()) == 1
