"""A killed kernel does not leave a dead page: the page says so in one line and reloads to its place.

After ``kill -9`` of a page's kernel every widget showed a broken-link icon and clicks did nothing,
while jupyter_server had already restarted the kernel empty. The dashboard's template now watches
its kernel (``workbench/dashboard/voila/templates/cqa``): the browser test selects a face and a
tab, kills the kernel, expects the one-line banner, presses its Reload button and expects the new
page at the same face and tab.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

import psutil
import pytest

from cqa_core.settings import Settings
from tests.support.galleries import framed_noise_gallery
from tests.support.headless import CAM, dashboard_server, launch_chromium

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "artifacts" / "hardening"
TAB = "Quality"


@pytest.fixture()
def voila_url(tmp_path):
    gallery = framed_noise_gallery(tmp_path / "gallery")
    yield from dashboard_server(ARTIFACTS / "voila_session.log", Settings(faces=gallery, people=4))


def kill_kernel(kernel_id: str) -> None:
    """SIGKILL the kernel process whose connection file names ``kernel_id``."""
    for p in psutil.process_iter(["pid", "cmdline"]):
        if any(f"kernel-{kernel_id}.json" in part for part in p.info["cmdline"] or ()):
            os.kill(p.info["pid"], signal.SIGKILL)
            return
    raise AssertionError(f"no process for kernel {kernel_id}")


def current_tab(page) -> str:
    return page.inner_text(".cqa-tabs .lm-TabBar-tab.lm-mod-current").strip()


@pytest.mark.browser
@pytest.mark.slow
def test_a_killed_kernel_is_noticed_and_the_reload_keeps_the_place(voila_url):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = launch_chromium(p)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(voila_url, timeout=180_000)
            page.wait_for_selector(f"{CAM}[src^='blob:']", timeout=180_000)
            thumbs = page.locator("button.cqa-thumb")
            name = thumbs.nth(2).get_attribute("title")
            thumbs.nth(2).click()
            page.wait_for_function("n => document.querySelector('.cqa-selected-name')?.innerText === n", arg=name,
                                   timeout=60_000)
            page.locator(".cqa-tabs .lm-TabBar-tab", has_text=TAB).first.click()
            page.wait_for_selector(".cqa-quality-values .cqa-q", timeout=60_000)
            assert page.locator(".cqa-session-ended").count() == 0  # a live session shows no banner
            kid = page.evaluate("() => JSON.parse(document.getElementById('jupyter-config-data').textContent).kernelId")

            kill_kernel(kid)
            banner = page.wait_for_selector(".cqa-session-ended", timeout=30_000)
            line = banner.inner_text().strip()
            assert "session ended" in line and "\n" not in line, line
            page.screenshot(path=str(ARTIFACTS / "session_ended.png"))

            with page.expect_navigation(timeout=60_000):
                page.locator(".cqa-session-ended button.cqa-reload").click()
            page.wait_for_selector(f"{CAM}[src^='blob:']", timeout=180_000)
            page.wait_for_function("n => document.querySelector('.cqa-selected-name')?.innerText === n", arg=name,
                                   timeout=60_000)  # the same face ...
            page.wait_for_function(f"() => document.querySelector('.cqa-tabs .lm-TabBar-tab.lm-mod-current')"
                                   f"?.innerText.trim() === '{TAB}'", timeout=60_000)  # ... and tab
            page.wait_for_selector(".cqa-quality-values .cqa-q", timeout=60_000)
            assert page.locator(".cqa-session-ended").count() == 0
            new = page.evaluate("() => JSON.parse(document.getElementById('jupyter-config-data').textContent).kernelId")
            assert new != kid  # a new session
            page.screenshot(path=str(ARTIFACTS / "session_restored.png"))
        finally:
            browser.close()
