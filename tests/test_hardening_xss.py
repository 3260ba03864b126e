"""No script from a face's name: gallery file names and an upload's name that carry HTML.

A face's name is chosen by whoever names a file: the gallery folder's owner (every viewer sees
it) or a viewer uploading a photo. The browser test serves a gallery of real LFW photos linked
under hostile names, selects each one, opens every tab (with a hostile face as the Pair tab's
second face too), then uploads a photo named the same way and opens every tab again. Each hostile
name sets ``window.cqaXss`` (or opens a dialog) if the page ever parses it as markup; the test
asserts it never did, and that the names are shown as text.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from cqa_core.settings import Settings
from tests.support.headless import CHROMIUM, launch_chromium, running_voila
from workbench.views.markup import escape, html, join, text

ROOT = Path(__file__).resolve().parents[1]
LFW = ROOT.parent / "shared" / "data" / "lfw-deepfunneled"
ARTIFACTS = ROOT / "artifacts" / "hardening"
HOSTILE = ["<img src=x onerror=window.cqaXss=1>", "<svg onload=window.cqaXss=2>",
           "\"'><img src=x onerror=window.cqaXss=3>", "<iframe srcdoc='<script>parent.cqaXss=4<&#47;script>'>"]
"""File stems that run script wherever they are parsed as HTML (no '/' in a file name: the iframe's
srcdoc spells it as an entity)."""
UPLOAD = "<img src=x onerror=window.cqaXss=5>.jpg"
PLAIN = ["Aaron_Peirsol", "Abdullah_Gul"]


# ---- the helper (no browser) ----------------------------------------------------------------------
def test_fragments_escape_every_value_once():
    name = HOSTILE[0]
    assert html("<b>{}</b> q={:.2f}", name, 0.456) == "<b>&lt;img src=x onerror=window.cqaXss=1&gt;</b> q=0.46"
    assert html("<i>{who}</i>", who=html("<b>{}</b>", "a&b")) == "<i><b>a&amp;b</b></i>"  # a fragment: kept
    assert join("<br>", [name, html("<b>{}</b>", 1)]) == "&lt;img src=x onerror=window.cqaXss=1&gt;<br><b>1</b>"
    assert text("\"'<>&") == "&#34;&#39;&lt;&gt;&amp;"
    assert escape(HOSTILE[1]) + "<br>" == "&lt;svg onload=window.cqaXss=2&gt;<br>" and type(escape(1)) is str


# ---- the page ------------------------------------------------------------------------------------
@pytest.fixture()
def hostile_gallery(tmp_path):
    if not LFW.is_dir():
        pytest.skip(f"no LFW at {LFW}")
    if CHROMIUM is None:
        pytest.skip("no chromium on PATH (.ci/run installs Debian's: apt-get install -y chromium)")
    pytest.importorskip("playwright.sync_api", reason="playwright python package not installed")
    gallery = tmp_path / "gallery"
    gallery.mkdir()
    (gallery / ".cqa-framing").write_text("lfw")  # centre alignment: no MTCNN, a fast test
    people = sorted(p for p in LFW.iterdir() if p.is_dir())
    for stem, person in zip(HOSTILE + PLAIN, people, strict=False):
        (gallery / f"{stem}.jpg").symlink_to(sorted(person.glob("*.jpg"))[0])  # linked, never copied
    return gallery


def no_script_ran(page, dialogs: list[str]) -> None:
    assert page.evaluate("() => window.cqaXss") is None, "a face name ran script"
    assert page.evaluate("() => [...document.querySelectorAll('iframe')].map(f => f.srcdoc).join('')") == ""
    assert dialogs == []


def visit_every_tab(page, name: str, dialogs: list[str]) -> None:
    """Open each tab with the face ``name`` selected; its name must be text wherever it is shown.

    The kernel renders the tabs in the order they were opened, and a rendered tab stays in the page
    when another is opened; ``window.cqaXss`` and ``dialogs`` keep whatever ran. So a short pause per
    tab, then the two waits for the name below (they come after every earlier render) and a last
    pause for a late ``onerror``, check every tab's render as a long pause per tab did."""
    tabs = page.locator(".cqa-tabs .lm-TabBar-tab")
    assert tabs.count() >= 5
    for i in range(tabs.count()):  # every tab the page has
        tabs.nth(i).click()
        page.wait_for_timeout(300)
        no_script_ran(page, dialogs)
    page.locator(".cqa-tabs .lm-TabBar-tab", has_text="Diversity").first.click()
    page.wait_for_function("name => document.querySelector('.cqa-diversity-tab')?.innerText.includes(name)",
                           arg=name, timeout=120_000)  # the view that once put the name in unescaped
    page.locator(".cqa-tabs .lm-TabBar-tab", has_text="Quality").first.click()
    page.wait_for_function("name => document.querySelector('.cqa-quality-values')?.innerText.includes(name)",
                           arg=name, timeout=120_000)
    page.wait_for_timeout(1500)  # an image's onerror waits for its failed load
    no_script_ran(page, dialogs)


@pytest.mark.browser
@pytest.mark.slow
@pytest.mark.data
def test_hostile_face_names_never_run_script(hostile_gallery):
    from playwright.sync_api import sync_playwright

    settings = Settings(faces=hostile_gallery, people=len(HOSTILE) + len(PLAIN))
    with running_voila(ARTIFACTS / "voila_xss.log", settings) as url, sync_playwright() as p:
        browser = launch_chromium(p)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            dialogs: list[str] = []
            page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
            page.goto(url, timeout=180_000)
            page.wait_for_selector("img.cqa-branch-cam[src^='blob:']", timeout=180_000)
            titles = page.locator("button.cqa-thumb").evaluate_all("bs => bs.map(b => b.title)")
            assert set(HOSTILE) <= set(titles), titles  # every hostile name reached the page as a name
            page.locator(".cqa-second select").select_option(label=HOSTILE[2])  # the Pair tab's partner
            for name in HOSTILE:
                page.locator(".cqa-tabs .lm-TabBar-tab", has_text="Face").first.click()
                page.locator("button.cqa-thumb").nth(titles.index(name)).click()
                page.wait_for_function("n => document.querySelector('.cqa-selected-name')?.innerText === n",
                                       arg=name, timeout=120_000)
                visit_every_tab(page, name, dialogs)
            photo = sorted(sorted(p for p in LFW.iterdir() if p.is_dir())[10].glob("*.jpg"))[0].read_bytes()
            with page.expect_file_chooser() as chooser:
                page.locator(".cqa-upload").click()
            chooser.value.set_files(files=[{"name": UPLOAD, "mimeType": "image/jpeg", "buffer": photo}])
            page.wait_for_function("n => document.querySelector('.cqa-selected-name')?.innerText === n",
                                   arg=f"upload: {UPLOAD}", timeout=120_000)
            visit_every_tab(page, f"upload: {UPLOAD}", dialogs)
            page.screenshot(path=str(ARTIFACTS / "xss_upload.png"))
            assert "Error" not in page.inner_text(".cqa-errors")
        finally:
            browser.close()
