"""Dashboard latency in a real browser: Voila request -> interactive, and click -> updated CAM.

    .venv/bin/python benchmarks/dashboard_latency.py [--clicks 8] [--people 60] [--preheat [--warmup 30]]

Starts Voila on the dashboard notebook (``workbench/dashboard/``; a free port, the default model), opens it in
headless Chromium (/usr/bin/chromium) through Playwright and prints:

* request_to_html_s: until the first HTML byte;  request_to_widgets_s: until the dashboard's
  widgets exist;  request_to_interactive_s: until the b branch CAMs of the first face are shown;
* click_to_cam_s: thumbnail click -> first branch CAM image replaced (median / max over clicks
  on faces not seen before, so every click runs the model);
* source_switch_s: attention -> similarity Grad-CAM, new picture shown.

Without ``--preheat`` the request starts a fresh kernel (cold start). With ``--preheat`` Voila
keeps a kernel that has already run the dashboard (as ``cqa workbench`` does); the script waits
``--warmup`` seconds for it before the request.

Results are printed as JSON and written to artifacts/dashboard_latency.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

from cqa_core.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
CAM = "img.cqa-branch-cam"


def measure(url: str, clicks: int) -> dict:
    from playwright.sync_api import sync_playwright

    from tests.support.headless import launch_chromium, wait_src_change

    out: dict = {}
    with sync_playwright() as p:
        browser = launch_chromium(p)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            t0 = time.perf_counter()
            page.on("response", lambda r: out.setdefault("request_to_html_s", time.perf_counter() - t0))
            page.goto(url, timeout=180_000)
            page.wait_for_selector(".cqa-dashboard", timeout=180_000)
            out["request_to_widgets_s"] = time.perf_counter() - t0
            page.wait_for_selector(f"{CAM}[src^='blob:']", timeout=180_000)
            out["request_to_interactive_s"] = time.perf_counter() - t0
            thumbs = page.locator("button.cqa-thumb")
            lat = []
            for i in range(1, min(clicks, thumbs.count() - 1) + 1):
                old = page.locator(CAM).first.get_attribute("src")
                t = time.perf_counter()
                thumbs.nth(i).click()
                wait_src_change(page, CAM, old)
                lat.append(time.perf_counter() - t)
            out["click_to_cam_s"] = {"median": statistics.median(lat), "max": max(lat), "n": len(lat)}
            old = page.locator("img.cqa-source-image").first.get_attribute("src")
            t = time.perf_counter()
            page.locator(".cqa-cam-source button", has_text="similarity Grad-CAM").click()
            wait_src_change(page, "img.cqa-source-image", old)
            out["source_switch_s"] = time.perf_counter() - t
        finally:
            browser.close()
    return out


def main() -> int:
    from tests.support.headless import running_voila

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clicks", type=int, default=8)
    ap.add_argument("--people", type=int, default=60, help="gallery size (CQA_GALLERY_PEOPLE)")
    ap.add_argument("--preheat", action="store_true", help="Voila preheat_kernel, as `cqa workbench` serves")
    ap.add_argument("--warmup", type=float, default=30.0, help="seconds to let the preheated kernel get ready")
    args = ap.parse_args()
    log = ROOT / "artifacts" / "dashboard_latency_voila.log"
    with running_voila(log, Settings(people=args.people), preheat=args.preheat) as url:
        if args.preheat:
            time.sleep(args.warmup)
        result = measure(url, args.clicks)
    result = {"date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), "cpus": os.cpu_count(),
              "load_avg_1m": round(os.getloadavg()[0], 2), "gallery_people": args.people,
              "preheat": args.preheat,
              **{k: (round(v, 3) if isinstance(v, float) else v) for k, v in result.items()}}
    result["click_to_cam_s"] = {k: round(v, 3) for k, v in result["click_to_cam_s"].items()}
    print(json.dumps(result, indent=1))
    name = "dashboard_latency_preheat.json" if args.preheat else "dashboard_latency.json"
    (ROOT / "artifacts" / name).write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
