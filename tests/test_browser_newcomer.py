"""A newcomer's first minutes at 1280 x 800 in a real browser (Voila + headless Chromium).

- A message is in view where the viewer looks: a bad upload (not an image) and a refused model
  path each say so in the banner under the header, inside the viewport.
- Every tab shows a placeholder with its name and a loading note within 200 ms of the first click,
  at full width (the tab bar is not cut).

Timings are printed; the 200 ms is asserted, measured in the page (pointer down to the placeholder drawn).
An upload joins the thumbnails marked "yours" and the upload button counts it.
"""

from __future__ import annotations

import pytest

from cqa_core.settings import Settings
from tests.support.headless import dashboard_server, launch_chromium, open_dashboard
from tests.test_browser_dashboard import ARTIFACTS

pytestmark = [pytest.mark.browser, pytest.mark.slow]

WIDTH, HEIGHT = 1280, 800


@pytest.fixture()
def voila_url():
    """Preheated as ``cqa workbench`` serves it: one kernel, for the test's one page."""
    yield from dashboard_server(ARTIFACTS / "voila_newcomer.log", Settings(people=12), preheat=True, pool=1)


def in_viewport(page, selector: str) -> bool:
    """True when the element's box lies inside the viewport (and is not empty)."""
    box = page.evaluate("sel => { const r = document.querySelector(sel).getBoundingClientRect();"
                        " return [r.top, r.bottom, r.left, r.right, r.height]; }", selector)
    top, bottom, left, right, height = box
    return height > 0 and top >= 0 and bottom <= HEIGHT and left >= 0 and right <= WIDTH


def test_messages_in_view_at_1280x800(voila_url, lfw_root):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = launch_chromium(p)
        try:
            page = open_dashboard(browser, voila_url, WIDTH, HEIGHT)

            # a text file through the upload box: the banner names it, in view
            with page.expect_file_chooser() as chooser:
                page.locator(".cqa-upload").click()
            chooser.value.set_files(files=[{"name": "notes.txt", "mimeType": "text/plain",
                                            "buffer": b"shopping list: milk, eggs\n"}])
            page.wait_for_function("() => document.querySelector('.cqa-errors')?.innerText.includes('notes.txt')",
                                   timeout=60_000)
            assert "Error" in page.inner_text(".cqa-errors")
            assert in_viewport(page, ".cqa-errors .cqa-error"), "the bad upload's message is out of view"
            page.screenshot(path=str(ARTIFACTS / "newcomer_bad_upload.png"))

            # a model path the workbench refuses: said in view too
            page.locator(".cqa-model-path input").fill("/nowhere/model.onnx")
            page.locator("button.cqa-model-add").click()
            page.wait_for_function("() => document.querySelector('.cqa-errors')?.innerText.includes('model.onnx')",
                                   timeout=60_000)
            page.wait_for_function("() => document.querySelector('.cqa-errors .cqa-error') !== null", timeout=60_000)
            assert in_viewport(page, ".cqa-errors .cqa-error"), "the refused model's message is out of view"
            page.screenshot(path=str(ARTIFACTS / "newcomer_refused_model.png"))

            # a good upload joins the thumbnails marked "yours" and the upload button counts it
            photo = lfw_root / "Aaron_Peirsol" / "Aaron_Peirsol_0003.jpg"
            with page.expect_file_chooser() as chooser:
                page.locator(".cqa-upload").click()
            chooser.value.set_files(files=[{"name": "mine.jpg", "mimeType": "image/jpeg", "buffer": photo.read_bytes()}])
            page.wait_for_selector(".cqa-yours-box .cqa-yours", timeout=60_000)
            page.wait_for_function("() => document.querySelector('.cqa-upload')?.innerText.includes('(1)')",
                                   timeout=30_000)
            page.wait_for_function("() => document.querySelector('.cqa-selected-name')?.innerText === 'upload: mine.jpg'",
                                   timeout=60_000)  # the thumbnail shows first, then the face is analysed
            page.screenshot(path=str(ARTIFACTS / "newcomer_upload.png"))
        finally:
            browser.close()


ARM_JS = """name => {
    // from the pointer going down on tab `name` to its placeholder drawn in view: window.__cqaTab[name]
    window.__cqaTab = window.__cqaTab || {};
    const tab = [...document.querySelectorAll('.cqa-tabs .lm-TabBar-tab')].find(t => t.innerText.trim() === name);
    let t0 = null;
    tab.addEventListener('pointerdown', () => { t0 = performance.now(); }, {capture: true, once: true});
    const watch = () => {
        const el = document.querySelector(`.cqa-tab-placeholder[data-tab="${name}"]`);
        if (t0 !== null && el && el.offsetWidth > 0) {
            window.__cqaTab[name] = {ms: performance.now() - t0, width: el.getBoundingClientRect().width,
                                     panel: document.querySelector('.cqa-tabs').getBoundingClientRect().width,
                                     text: el.innerText};
        } else { requestAnimationFrame(watch); }
    };
    requestAnimationFrame(watch);
}"""


def test_every_tab_shows_its_placeholder_at_once_at_full_width(voila_url):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = launch_chromium(p)
        try:
            page = open_dashboard(browser, voila_url, WIDTH, HEIGHT)
            # the tab titles fit their tabs (not cut to "Diversi", "Mask l")
            cut = page.evaluate("() => [...document.querySelectorAll('.cqa-tabs .lm-TabBar-tabLabel')]"
                                ".filter(e => e.scrollWidth > e.clientWidth).map(e => e.innerText)")
            assert cut == [], cut
            sidebar = page.evaluate("() => document.querySelector('.cqa-gallery').getBoundingClientRect().right")
            for name in ("Pair", "Diversity", "Quality", "Mask lab", "Benchmark"):
                page.evaluate(ARM_JS, name)
                page.locator(".cqa-tabs .lm-TabBar-tab", has_text=name).first.click()
                page.wait_for_function("name => window.__cqaTab && window.__cqaTab[name]", arg=name, timeout=10_000)
                got = page.evaluate("name => window.__cqaTab[name]", name)
                print(f"{name}: placeholder after {got['ms']:.0f} ms, {got['width']:.0f} of {got['panel']:.0f} px")
                assert got["ms"] < 200, got
                assert name in got["text"] and "loading" in got["text"], got
                # full width: the placeholder fills the tab panel, which fills the page beside the sidebar
                assert got["width"] >= 0.9 * got["panel"] and got["panel"] >= 0.9 * (WIDTH - sidebar - 40), got
                page.screenshot(path=str(ARTIFACTS / f"newcomer_tab_{name.replace(' ', '_')}.png"))
                page.wait_for_selector(f".cqa-tab-placeholder[data-tab='{name}']", state="detached", timeout=120_000)
        finally:
            browser.close()
