"""What serving plotly's widget bundle once saves: time from a tab's first click to its charts drawn.

    PYTHONPATH=. .venv/bin/python benchmarks/figure_bundle.py [--rounds 2]

A plotly FigureWidget carries plotly's ~5 MB front end inside the widget; the workbench's Voila
server serves that file and its kernels' figures import it (``workbench.views.figures``). This
starts the dashboard (Voila, the model in its kernel, a pool of one) twice per round, with
``--WorkbenchVoila.plotly_bundle=False`` (the baseline: each figure carries its bundle) and True,
opens it in headless Chromium at 1440 x 900, and times, for the Pair, Quality and Mask lab tabs and
for the Benchmark tab over one synthetic run, the first click until the tab's Plotly charts are
drawn. It prints each time and the ratio baseline / served, measured in the same run.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from cqa_core.evaluation.runs.synthetic import synthetic_run
from cqa_core.settings import Settings
from tests.support.headless import ROOT, launch_chromium, open_dashboard, wait_http
from workbench.serve import free_port, kernel_env, voila_command

TABS = {"Pair": 2, "Quality": 1, "Mask lab": 1, "Benchmark": 7}
"""Tab -> Plotly charts it draws on first opening (Pair: its two bar charts; Benchmark: one run's seven)."""


def tab_times(url: str) -> dict[str, float]:
    """Seconds from each tab's first click to its charts drawn, on a fresh page."""
    from playwright.sync_api import sync_playwright

    out = {}
    with sync_playwright() as p:
        browser = launch_chromium(p)
        try:
            page = open_dashboard(browser, url, 1440, 900)
            for name, charts in TABS.items():
                tab = page.locator(".cqa-tabs .lm-TabBar-tab", has_text=name).first
                t0 = time.perf_counter()
                tab.click()
                page.wait_for_function(
                    "n => [...document.querySelectorAll('.cqa-tabs .lm-TabPanel-stackedpanel, .cqa-tabs .widget-tab-contents > *')]"
                    ".filter(e => e.offsetParent !== null)"
                    ".some(e => e.querySelectorAll('.js-plotly-plot .main-svg').length >= n)", arg=charts, timeout=180_000)
                out[name] = time.perf_counter() - t0
        finally:
            browser.close()
    return out


def serve(bundle: bool, runs: Path, log: Path):
    port = free_port()
    env = kernel_env(Settings(people=6, runs=runs))
    cmd = voila_command(port, preheat=True, pool=1) + [f"--WorkbenchVoila.plotly_bundle={bundle}"]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=open(log, "w"), stderr=subprocess.STDOUT,
                            start_new_session=True)
    wait_http(f"http://127.0.0.1:{port}/voila/static/voila.js")
    return proc, f"http://127.0.0.1:{port}/"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        runs = Path(tmp) / "runs"
        synthetic_run(runs / "synthetic", pairs=400, faces=200, name="synthetic")
        results: dict[bool, list[dict[str, float]]] = {False: [], True: []}
        for r in range(args.rounds):
            for bundle in (False, True):
                proc, url = serve(bundle, runs, Path(tmp) / f"voila-{bundle}-{r}.log")
                try:
                    time.sleep(5)  # the pool's kernel has run the dashboard
                    results[bundle].append(tab_times(url))
                finally:
                    os.killpg(proc.pid, signal.SIGTERM)
                    proc.wait(timeout=30)
                print(f"round {r + 1}, bundle {'served once' if bundle else 'in every figure'}: "
                      + ", ".join(f"{k} {v:.1f} s" for k, v in results[bundle][-1].items()), flush=True)
    print(f"\n{'tab':10s} {'in every figure':>16s} {'served once':>12s} {'ratio':>6s}   (mean of {args.rounds} rounds)")
    for name in TABS:
        a = sum(x[name] for x in results[False]) / len(results[False])
        b = sum(x[name] for x in results[True]) / len(results[True])
        print(f"{name:10s} {a:15.1f}s {b:11.1f}s {a / b:6.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
