"""A quiet, offline start: ``cqa workbench`` logs no trust or TCP warning, and its page asks no other host.

- The server log (service, Voila, two preheated kernels) has no "Notebook ... is not trusted" line
  (the dashboard notebook is signed at start, in memory) and no "Kernel is running over TCP" line
  (kernels talk over Unix sockets); that the kernels did start is checked from the same log.
- Headless Chromium opens the dashboard, opens a second tab (its widgets load: a data grid, Plotly),
  and every request the page made went to the workbench's own ``127.0.0.1:<port>``: Font Awesome
  and every other font come from the installed packages, not a CDN. The button icons still draw
  (their glyph has Font Awesome's font and a width), no font or stylesheet request failed, and no
  console message mentions jupytext (its lab extension is not loaded by the dashboard).
"""

from __future__ import annotations

import time
from urllib.parse import urlsplit

import pytest

from tests.support.headless import CHROMIUM, launch_chromium, running_workbench
from tests.test_browser_dashboard import ARTIFACTS

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.data]

LOG = ARTIFACTS / "workbench_offline.log"
POOL = 2
"""Preheated kernels: each one loaded the notebook (a "not trusted" warning apiece before it was signed)."""
ICON_JS = """() => ({
    icons: [...document.querySelectorAll('button i.fa')].map(i => {
        const s = getComputedStyle(i, '::before');
        return {cls: i.className, font: s.fontFamily, content: s.content, width: i.getBoundingClientRect().width};
    }),
    fonts: [...document.fonts].filter(f => f.family.includes('Font Awesome')).map(f => `${f.family} ${f.weight}: ${f.status}`),
})"""


@pytest.fixture(scope="module")
def workbench(lfw_root):
    """``cqa workbench`` with a pool of :data:`POOL` on free ports, logging to :data:`LOG`: its page URL (with the token)."""
    if CHROMIUM is None:
        pytest.skip("no chromium on PATH (.ci/run installs Debian's: apt-get install -y chromium)")
    pytest.importorskip("playwright.sync_api", reason="playwright python package not installed")
    with running_workbench(LOG, preheat=True, args=(f"--pool={POOL}",), CQA_GALLERY_PEOPLE="12") as (url, _, _pid):
        yield url


def outside(urls: list[str], own: str) -> list[str]:
    """The requested URLs whose host is not ``own`` (``127.0.0.1:<port>``); data: and blob: URLs are the page's own."""
    return [u for u in urls if urlsplit(u).scheme not in ("data", "blob") and urlsplit(u).netloc != own]


def test_outside_filter_catches_other_hosts():
    own = "127.0.0.1:8866"
    urls = [f"http://{own}/voila/static/voila.js", "blob:http://127.0.0.1:8866/x", "data:image/png;base64,AA",
            "https://cdn.jsdelivr.net/npm/@fortawesome/fontawesome-free@^5/css/all.min.css",
            "http://127.0.0.1:9999/other", f"ws://{own}/api/kernels/k/channels", "http://localhost:8866/x"]
    assert outside(urls, own) == urls[3:5] + urls[6:]


def open_dashboard_in(page, url: str):
    """``open_dashboard`` on a page already made (its context records the requests); returns it."""
    page.goto(url, timeout=180_000)
    page.wait_for_selector("img.cqa-branch-cam[src^='blob:']", timeout=180_000)
    return page


def test_page_requests_only_the_workbench(workbench):
    from playwright.sync_api import sync_playwright

    own = urlsplit(workbench).netloc
    requests: list[str] = []
    failed: list[str] = []
    console: list[str] = []
    page_charts: list[int] = []
    with sync_playwright() as p:
        browser = launch_chromium(p)
        try:
            context = browser.new_context(viewport={"width": 1400, "height": 1000})
            context.on("request", lambda r: requests.append(r.url))  # every frame and worker of the page
            context.on("requestfailed", lambda r: failed.append(f"{r.url} ({r.failure})"))
            page = context.new_page()
            page.on("console", lambda m: console.append(f"{m.type}: {m.text}"))
            page.on("pageerror", lambda e: console.append(f"pageerror: {e}"))
            page.on("websocket", lambda ws: requests.append(ws.url))
            page = open_dashboard_in(page, workbench)
            for name in ("Pair", "Diversity", "Quality", "Mask lab", "Benchmark"):  # every tab's widgets: Plotly, a grid
                page.locator(".cqa-tabs .lm-TabBar-tab", has_text=name).first.click()
                page.wait_for_selector(f".cqa-tab-placeholder[data-tab='{name}']", state="detached", timeout=120_000)
            page.wait_for_selector("button i.fa", timeout=60_000)
            page.wait_for_timeout(1500)  # late font and stylesheet requests
            icons = page.evaluate(ICON_JS)
            page_charts.append(page.evaluate("() => document.querySelectorAll('.js-plotly-plot').length"))
            page.screenshot(path=str(ARTIFACTS / "offline_tab.png"))
        finally:
            browser.close()
    print(f"{len(requests)} requests to {sorted({urlsplit(u).netloc for u in requests} - {''})}; icons: {icons}")
    print("console errors and warnings:", *[m for m in console if m.startswith(("error", "warning", "pageerror"))],
          sep="\n  ")
    assert any(own in u for u in requests), requests[:5]  # the recorder saw the page's own requests
    assert outside(requests, own) == [], sorted(set(outside(requests, own)))
    assert [f for f in failed if any(k in f for k in (".css", ".woff", ".ttf", ".eot", ".svg"))] == [], failed
    # every tab's Plotly figures import plotly's bundle from the workbench: fetched once, not carried by each figure
    bundles = [u for u in requests if "widgetbundle.js" in u]
    assert len(bundles) == 1 and urlsplit(bundles[0]).netloc == own, bundles
    assert [f for f in failed if "widgetbundle" in f] == [], failed
    charts = page_charts[0]
    assert charts >= 3, charts  # the figures drew (Pair, Quality, Mask lab bars at least)
    # the icons (an upload arrow, a chart) use Font Awesome, whose font the page loaded, and take up room
    assert icons["icons"] and all("Font Awesome" in i["font"] and i["content"] not in ("none", "normal")
                                  for i in icons["icons"]), icons
    assert any(i["width"] > 4 for i in icons["icons"]) and any(f.endswith("loaded") for f in icons["fonts"]), icons
    assert [m for m in console if "jupytext" in m.lower()] == [], console


def test_startup_log_has_no_trust_or_tcp_warning(workbench):
    deadline = time.monotonic() + 180
    while LOG.read_text().count("Kernel started") < POOL and time.monotonic() < deadline:
        time.sleep(0.5)  # Voila loads the notebook for a pool kernel before it logs that kernel's start
    log = LOG.read_text()
    assert log.count("Kernel started") >= POOL, log[-3000:]  # the pool's kernels did start (and load the notebook)
    assert "not trusted" not in log, [line for line in log.splitlines() if "not trusted" in line]
    assert "running over TCP" not in log, [line for line in log.splitlines() if "over TCP" in line]
    assert "Task exception was never retrieved" not in log, log[-3000:]  # e.g. a closed page's websocket


def test_a_closed_page_is_no_traceback():
    """A kernel message that finds its page closed is dropped quietly; any other task error still reaches asyncio's handler."""
    from tornado.websocket import WebSocketClosedError

    from workbench.voila_server import quiet_closed_sockets

    class Loop:
        def __init__(self) -> None:
            self.reported: list[dict] = []

        def default_exception_handler(self, context: dict) -> None:
            self.reported.append(context)

    loop = Loop()
    quiet_closed_sockets(loop, {"message": "Task exception was never retrieved", "exception": WebSocketClosedError()})
    assert loop.reported == []
    other = {"message": "Task exception was never retrieved", "exception": KeyError("x")}
    quiet_closed_sockets(loop, other)
    assert loop.reported == [other]
