"""The Benchmark tab in a real browser: open a real run, click the worst false accept, land on that pair.

The run is ``cqa eval --out`` on 60 LFW pairs with the bundled model, centre-cropped (no MTCNN: what is
checked is the click, not the alignment; the Pair tab opens the faces as the run aligned them), made once
into tmp_path. The error table is a canvas (ipydatagrid): the test clicks its first body row by
position. Screenshots go to ``artifacts/browser/`` (gitignored).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from cqa_core.settings import Settings
from tests.support.headless import CHROMIUM, launch_chromium, running_voila

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.data]

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "artifacts" / "browser"
PAIRS = 60
HEADER_H, ROW_H, ROW_HEADER_W = 20, 52, 64
"""ipydatagrid's column-header height and row-header width (its defaults), and the table's row height."""


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, lfw_root):
    """A real run: the bundled CQA-Face on 60 LFW pairs, centre-cropped (its own empty cache)."""
    pytest.importorskip("duckdb", reason="the runs extra is not installed")
    runs = tmp_path_factory.mktemp("runs")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CQA_CACHE": str(runs.parent / "cache")}
    env.pop("CQA_CHECKPOINT", None)
    subprocess.run([sys.executable, "-m", "cqa_core.cli", "eval", "--limit", str(PAIRS), "--align", "center", "--device", "cpu",
                    "--out", str(runs / "cqa-lfw")], check=True, env=env, cwd=ROOT, timeout=600)
    return runs


def worst_false_accept(run: Path) -> tuple[str, str]:
    """The names the dashboard gives the two faces of the run's worst false accept."""
    import duckdb

    p1, p2 = duckdb.sql(f"SELECT path1, path2 FROM read_parquet('{run / 'pairs.parquet'}') "
                        "WHERE outcome = 'false accept' ORDER BY correct_margin, pair_id LIMIT 1").fetchall()[0]
    return Path(p1).stem.replace("_", " "), Path(p2).stem.replace("_", " ")


def test_clicking_the_worst_false_accept_opens_it_in_the_pair_tab(run_dir):
    if CHROMIUM is None:
        pytest.skip("no chromium on PATH (.ci/run installs Debian's: apt-get install -y chromium)")
    pytest.importorskip("playwright.sync_api", reason="playwright python package not installed")
    from playwright.sync_api import sync_playwright

    name1, name2 = worst_false_accept(run_dir / "cqa-lfw")
    with running_voila(ARTIFACTS / "voila-benchmark.log", Settings(people=6, runs=run_dir), preheat=False) as url, \
            sync_playwright() as p:
        browser = launch_chromium(p)
        try:
            page = browser.new_page(viewport={"width": 1500, "height": 1100})
            page.goto(url, timeout=180_000)
            page.wait_for_selector("img.cqa-branch-cam[src^='blob:']", timeout=180_000)
            page.locator(".cqa-tabs .lm-TabBar-tab", has_text="Benchmark").first.click()
            page.wait_for_selector(".cqa-bench-total", timeout=120_000)
            assert "default model on lfw verify" in page.inner_text(".cqa-bench-label")
            page.locator(".cqa-bench-kind button", has_text="false accept").click()
            page.wait_for_function("() => document.querySelector('.cqa-bench-page')?.innerText.includes('(false accept)')",
                                   timeout=60_000)
            grid = page.locator(".cqa-bench-grid")
            grid.scroll_into_view_if_needed()
            page.wait_for_timeout(1500)  # the canvas redraws the new page
            page.screenshot(path=str(ARTIFACTS / "10_benchmark.png"))
            box = grid.bounding_box()
            page.mouse.click(box["x"] + ROW_HEADER_W + 200, box["y"] + HEADER_H + ROW_H / 2)
            page.wait_for_function(
                "([a, b]) => { const t = [...document.querySelectorAll('.cqa-pair-row .cqa-pair-title')].map(e => e.innerText);"
                " return t.some(x => x.includes(a)) && t.some(x => x.includes(b)); }",
                arg=[name1, name2], timeout=120_000)
            page.wait_for_selector(".cqa-pair-verdict .cqa-similarity", timeout=60_000)
            titles = page.locator(".cqa-pair-row .cqa-pair-title").all_inner_texts()
            assert name1 in titles[0] and name2 in titles[1], titles
            selected = page.locator(".cqa-tabs .lm-TabBar-tab.lm-mod-current").inner_text()
            assert selected.strip() == "Pair"
            page.screenshot(path=str(ARTIFACTS / "11_benchmark_pair.png"))
        finally:
            browser.close()
