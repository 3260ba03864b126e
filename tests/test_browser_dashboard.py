"""The Voila dashboard in a real browser: Voila subprocess + headless Chromium through Playwright.

One test walks the user's path: load, CAMs + quality bars render, select a face, switch the CAM
source, apply a mask (a quality number changes), upload a corrupt file and an 11 MB one (plain
errors, page keeps working), select another face. Screenshots and timings go to ``artifacts/`` (gitignored).
Timings are printed and recorded, never asserted.
"""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path

import pytest

from cqa_core.settings import Settings
from tests.support.headless import (
    dashboard_server,
    launch_chromium,
    wait_src_change,
)

pytestmark = [pytest.mark.browser, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "artifacts" / "browser"
B = 4  # branches of the default light model
PREHEAT = os.environ.get("CQA_TEST_PREHEAT", "1") == "1"  # as `cqa workbench` serves it


@pytest.fixture()
def voila_url():
    """A Voila server on a free port, killed (with its kernels) however the test ends; one preheated kernel
    for the test's one page (voila.json's ten would each run the model in-process on these two cores)."""
    yield from dashboard_server(ARTIFACTS / "voila.log", Settings(people=12), preheat=PREHEAT, pool=1)


def src_of(page, selector: str, i: int = 0) -> str:
    return page.locator(selector).nth(i).get_attribute("src") or ""


def open_tab(page, name: str) -> None:
    page.locator(".cqa-tabs .lm-TabBar-tab", has_text=name).first.click()


# the z of every plotly heatmap under a selector, as the page's plotly holds it (graph div ``.data``)
HEATMAPS_JS = """sel => [...document.querySelectorAll(sel + ' .js-plotly-plot')]
    .filter(g => g.data && g.data[0] && g.data[0].type === 'heatmap').map(g => g.data[0].z)"""


def heatmaps(page, selector: str) -> list[list[list[float]]]:
    return page.evaluate(HEATMAPS_JS, selector)


def all_zero(z: list[list[float]]) -> bool:
    return all(float(v) == 0.0 for row in z for v in row)


def clipped(page, selector: str) -> bool:
    """True when the element's text does not fit its box (ipywidgets buttons cut with an ellipsis)."""
    return page.evaluate("sel => { const e = document.querySelector(sel); return e.scrollWidth > e.clientWidth; }",
                         selector)


def test_dashboard_in_browser(voila_url):
    from playwright.sync_api import sync_playwright

    timings: dict[str, float] = {}
    with sync_playwright() as p:
        browser = launch_chromium(p)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            t0 = time.perf_counter()
            page.goto(voila_url, timeout=180_000)
            page.wait_for_selector("img.cqa-branch-cam[src^='blob:']", timeout=180_000)
            timings["request_to_interactive_s"] = time.perf_counter() - t0
            page.screenshot(path=str(ARTIFACTS / "01_loaded.png"))

            # b CAM images, each titled with its quality
            cams = page.locator("img.cqa-branch-cam")
            assert cams.count() == B
            assert all(src_of(page, "img.cqa-branch-cam", i).startswith("blob:") for i in range(B))
            titles = page.locator(".cqa-branch-title").all_inner_texts()
            assert len(titles) == B and all(re.search(rf"branch {i}\s+q=\d\.\d\d", t) for i, t in enumerate(titles))
            from cqa_core.checkpoint import DEFAULT_WEIGHTS

            header = "model: default model" if DEFAULT_WEIGHTS.exists() else "untrained model"
            assert header in page.inner_text(".cqa-header")
            # the first face's overall quality is in the header, a number in [0, 1]
            assert 0.0 <= float(page.inner_text(".cqa-overall-quality")) <= 1.0
            # the first face's relation A is shown at load, as numbers in a b x b table (Voila runs the
            # first selection before the page connects: a plotly figure updated in place then kept
            # its construction-time zeros)
            cells = page.locator(".cqa-relation td.cqa-cell").all_text_contents()
            assert len(cells) == B * B and any(float(t) != 0.0 for t in cells), cells

            # select a face: the CAMs update in place
            thumbs = page.locator("button.cqa-thumb")
            assert thumbs.count() >= 3
            old = src_of(page, "img.cqa-branch-cam")
            name = thumbs.nth(2).get_attribute("title")
            thumbs.nth(2).click()
            timings["click_to_cam_s"] = wait_src_change(page, "img.cqa-branch-cam", old)
            assert page.inner_text(".cqa-selected-name") == name

            # switch the CAM source
            old = src_of(page, "img.cqa-source-image")
            t1 = time.perf_counter()
            page.locator(".cqa-cam-source button", has_text="similarity Grad-CAM").click()
            page.wait_for_function("() => document.querySelector('.cqa-source-title')?.innerText.includes('Grad-CAM')",
                                   timeout=60_000)
            wait_src_change(page, "img.cqa-source-image", old)
            timings["source_switch_s"] = time.perf_counter() - t1
            # every map has its colour bar and a line with its unit, range and normalisation
            page.wait_for_function("() => document.querySelector('.cqa-face-tab .cqa-map-scale')?.innerText"
                                   ".includes('shared across pair')", timeout=60_000)
            assert page.locator(".cqa-face-tab img.cqa-colour-bar[src^='blob:']").count() == 1 + B
            assert page.locator(".cqa-face-tab .cqa-map-scale", has_text="shared across branches").count() == B
            page.screenshot(path=str(ARTIFACTS / "02_gradcam.png"))

            # pair: similarity + verdict, the (b+1) x (b+1) contribution heatmap, CAMs on both faces
            open_tab(page, "Pair")
            page.wait_for_selector(".cqa-pair-verdict .cqa-similarity", timeout=60_000)
            page.wait_for_selector(".cqa-pair-matrix .heatmaplayer", timeout=60_000)
            assert page.locator(".cqa-pair-row img.cqa-pair-cam[src^='blob:']").count() == 2
            # the decomposition's rows are face a's terms, its columns face b's, each axis named after its face
            assert "(face a)" in page.locator(".cqa-pair-matrix .ytitle").text_content()  # SVG text
            assert "(face b)" in page.locator(".cqa-pair-matrix .xtitle").text_content()
            assert "full cosine" in page.locator(".cqa-pair-loo .gtitle").text_content()
            page.screenshot(path=str(ARTIFACTS / "02b_pair.png"))

            # diversity: this model's matrix; no zero matrix stands in for the unloaded second
            # checkpoint (a caption says so); the histogram button shows its whole label
            open_tab(page, "Diversity")
            page.wait_for_function(f"sel => {{ const z = ({HEATMAPS_JS})(sel); return z.length > 0 && "
                                   "z.every(m => m.some(r => r.some(v => v !== 0))); }",
                                   arg=".cqa-diversity-matrix", timeout=60_000)
            assert not any(all_zero(z) for z in heatmaps(page, ".cqa-diversity-tab"))
            assert heatmaps(page, ".cqa-diversity-other") == []
            assert "no second checkpoint loaded" in page.inner_text(".cqa-diversity-other")
            assert "histogram over gallery" in page.inner_text("button.cqa-diversity-scan")
            assert not clipped(page, "button.cqa-diversity-scan")
            page.screenshot(path=str(ARTIFACTS / "02c_diversity.png"))

            # quality bars render (one bar per branch) with their numbers
            open_tab(page, "Quality")
            page.wait_for_selector(".cqa-quality-values .cqa-q", timeout=60_000)
            page.wait_for_function("() => document.querySelectorAll('.cqa-quality-bars .bars .point path').length >= 4",
                                   timeout=60_000)
            assert len(page.locator(".cqa-quality-values .cqa-q").all_inner_texts()) == B
            page.screenshot(path=str(ARTIFACTS / "03_quality.png"))

            # mask lab: apply a mask, a displayed quality value changes
            open_tab(page, "Mask lab")
            page.wait_for_selector(".cqa-mask-values .cqa-mask-q", timeout=60_000)
            before = page.locator(".cqa-mask-values .cqa-mask-q").all_inner_texts()
            t2 = time.perf_counter()
            page.locator("button.cqa-mask-apply").click()
            page.wait_for_selector(".cqa-mask-table", timeout=60_000)
            timings["mask_apply_s"] = time.perf_counter() - t2
            after = page.locator(".cqa-mask-values .cqa-mask-q").all_inner_texts()
            assert len(after) == B and after != before, (before, after)
            page.screenshot(path=str(ARTIFACTS / "04_mask.png"))

            # a corrupt upload: a plain message in the error area, no traceback, page still works
            # ipywidgets 8 keeps the FileUpload's <input type=file> detached: go through its file chooser
            with page.expect_file_chooser() as chooser:
                page.locator(".cqa-upload").click()
            chooser.value.set_files(files=[
                {"name": "corrupt.jpg", "mimeType": "image/jpeg", "buffer": b"\xff\xd8\xff\xe0 not really a jpeg"}])
            page.wait_for_function("() => document.querySelector('.cqa-errors')?.innerText.includes('Error')",
                                   timeout=60_000)
            message = page.inner_text(".cqa-errors")
            assert "corrupt.jpg" in message and "Traceback" not in message, message
            page.screenshot(path=str(ARTIFACTS / "05_corrupt_upload.png"))

            # an upload over the 10 MB limit reaches the kernel (voila.json) and is refused in words
            with page.expect_file_chooser() as chooser:
                page.locator(".cqa-upload").click()
            chooser.value.set_files(files=[
                {"name": "huge.jpg", "mimeType": "image/jpeg", "buffer": b"\xff\xd8" + bytes(11 * 2**20)}])
            page.wait_for_function("() => document.querySelector('.cqa-errors')?.innerText.includes('huge.jpg')",
                                   timeout=90_000)
            assert "upload limit" in page.inner_text(".cqa-errors")

            open_tab(page, "Face")
            old = src_of(page, "img.cqa-branch-cam")
            name = thumbs.nth(4).get_attribute("title")
            thumbs.nth(4).click()
            wait_src_change(page, "img.cqa-branch-cam", old)
            assert page.inner_text(".cqa-selected-name") == name
            assert name in page.inner_text(".cqa-face-info")  # the info line is pushed before the CAMs
            assert "Error" not in page.inner_text(".cqa-errors")
            page.screenshot(path=str(ARTIFACTS / "06_after_error.png"))
        finally:
            browser.close()
    timings = {k: round(v, 3) for k, v in timings.items()}
    (ARTIFACTS / "timings.json").write_text(json.dumps(timings, indent=1))
    print("browser timings:", timings)


@pytest.fixture()
def default_onnx(tmp_path):
    """The bundled default model exported to ONNX: a second, white-box recognizer to add."""
    pytest.importorskip("onnx2torch", reason="the export extra (onnx, onnx2torch) is not installed")
    from cqa_core.checkpoint import load_default
    from cqa_core.export import export_onnx

    return export_onnx(load_default(), tmp_path / "default.onnx")


def test_pair_tab_with_two_models_side_by_side(voila_url, default_onnx):
    """Add an ONNX recognizer through the model picker, put it beside CQA-Face in the Pair tab: two
    verdict lines (each its own cosine) and the same method's maps on both faces under both models."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = launch_chromium(p)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1100})
            page.goto(voila_url, timeout=180_000)
            page.wait_for_selector("img.cqa-branch-cam[src^='blob:']", timeout=180_000)
            page.locator(".cqa-model-path input").fill(str(default_onnx))
            page.locator("button.cqa-model-add").click()
            page.wait_for_function("() => [...document.querySelectorAll('.cqa-model select option')].length >= 2",
                                   timeout=120_000)
            assert "Error" not in page.inner_text(".cqa-errors")

            open_tab(page, "Pair")
            page.wait_for_selector(".cqa-pair-verdict .cqa-similarity", timeout=60_000)
            beside = page.locator(".cqa-pair-beside select")
            options = [o.replace("\xa0", " ") for o in beside.locator("option").all_inner_texts()]
            assert len(options) == 2 and options[0] == "no second model", options
            assert not page.locator(".cqa-pair-row-other").is_visible()
            blank = [src_of(page, ".cqa-pair-row-other img.cqa-pair-cam", i) for i in range(2)]
            beside.select_option(label=options[1])
            page.wait_for_selector(".cqa-pair-verdict-other .cqa-similarity", timeout=120_000)
            # the second model's maps of both faces replace the blank images
            page.wait_for_function("old => [...document.querySelectorAll('.cqa-pair-row-other img.cqa-pair-cam')]"
                                   ".every((e, i) => e.src.startsWith('blob:') && e.src !== old[i])",
                                   arg=blank, timeout=120_000)
            assert page.locator(".cqa-pair-row-other").is_visible()
            main = float(page.inner_text(".cqa-pair-verdict .cqa-similarity"))
            other = float(page.inner_text(".cqa-pair-verdict-other .cqa-similarity"))
            assert -1.0 <= main <= 1.0 and -1.0 <= other <= 1.0
            assert abs(main - other) < 0.01, (main, other)  # the same weights through ONNX: the same cosine
            assert options[1] in page.inner_text(".cqa-pair-verdict-other")
            assert "Error" not in page.inner_text(".cqa-errors")
            page.screenshot(path=str(ARTIFACTS / "07_pair_side_by_side.png"))
        finally:
            browser.close()
