"""Many viewers at once: N browser contexts open the dashboard at the same moment.

    .venv/bin/python benchmarks/dashboard_load.py --viewers 10 [--people 60] [--settle 20] [--proxy] [--no-service]

Starts ``cqa workbench`` (the analysis service + Voila, preheated kernels, the default model,
the first ``--people`` LFW people) on free ports, waits until the service has warmed its gallery
and ``--settle`` more seconds (the preheated kernels fill), then opens N pages in N headless
Chromium contexts at once (Playwright's async API, one browser). ``--proxy`` puts Debian's nginx
with the shipped ``deploy/nginx-cqa-workbench.conf`` in front (TLS with a self-signed certificate,
``cqa workbench --base-url /cqa/``) and the viewers open ``https://.../cqa/?token=...`` through
it, as a lab would. For each viewer it records:

* ``interactive_s``: request -> the b branch CAMs of the first face shown;
* ``notice_s``: request -> a plain note is visible (the first cell's "loading" / "busy: N viewers
  loading ahead of you", or the kernel's "busy: N requests ahead of you"), if one showed before
  the CAMs; ``busy_s`` when that note said busy;
* ``click_s``: a click on a thumbnail nobody else clicked -> that face's CAMs shown; every viewer
  clicks as soon as its own page is interactive, so clicks overlap other viewers' page loads.

It also prints the CPU seconds spent while the viewers loaded, split between the server
(service, Voila, kernels) and the browser (Playwright + Chromium, which here run on the same 2
cores; a real lab's browsers run on the viewers' own machines). It then prints the number of kernels, the RSS of every server process (service, Voila, kernels;
PSS where the kernel allows, which counts shared libraries once) and the same right after start-up,
so "per extra viewer" is (RSS now - RSS idle) / N. ``--no-service`` runs the old setup for the
baseline: Voila alone, each kernel loads its own model. JSON goes to
artifacts/dashboard_load_N[_proxy|_noservice].json.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import statistics
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

from cqa_core.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def wait_warm(service_url: str, people: int, limit: float = 300.0) -> float:
    """Seconds until the service has analysed the gallery and its queue is empty."""
    from tests.support.headless import service_json  # after the checkout is on sys.path

    t0 = time.monotonic()
    while time.monotonic() - t0 < limit:
        try:
            s = service_json(service_url, "/stats", timeout=5)
            if s["computed"] >= people and s["pending"] == 0:
                return time.monotonic() - t0
        except OSError:
            pass
        time.sleep(0.5)
    return time.monotonic() - t0


def summary(values: list[float]) -> dict:
    if not values:
        return {}
    return {"median": round(statistics.median(values), 2), "max": round(max(values), 2), "n": len(values)}


def main() -> int:
    from tests.support.headless import (
        cpu_seconds,
        memory,
        run_viewers,
        running_voila,
        running_workbench,
        server_processes,
        service_json,
    )

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--viewers", type=int, default=10)
    ap.add_argument("--people", type=int, default=60, help="gallery size (CQA_GALLERY_PEOPLE)")
    ap.add_argument("--settle", type=float, default=20.0, help="seconds after warm-up before the viewers arrive")
    ap.add_argument("--timeout", type=float, default=180.0, help="seconds a viewer waits before it counts as failed")
    ap.add_argument("--proxy", action="store_true", help="through nginx with deploy/'s configuration (TLS, /cqa/)")
    ap.add_argument("--no-service", dest="service", action="store_false", help="baseline: Voila alone")
    args = ap.parse_args()
    if args.proxy and not args.service:
        ap.error("--proxy needs the service (cqa workbench)")
    log = ROOT / "artifacts" / f"dashboard_load_{args.viewers}.log"
    env = {"CQA_GALLERY_PEOPLE": str(args.people)}
    t_start = time.monotonic()
    if args.service:
        ctx = running_workbench(log, preheat=True, base_url="/cqa/" if args.proxy else "/", **env)
    else:
        ctx = running_voila(log, Settings(people=args.people), preheat=True)
    with ctx as handle, contextlib.ExitStack() as stack:
        url, service_url, pid = handle if args.service else (handle, None, None)
        if args.proxy:
            from tests.support.proxy import running_nginx

            port, _ = stack.enter_context(running_nginx(Path(stack.enter_context(tempfile.TemporaryDirectory())), url))
            url = f"https://127.0.0.1:{port}/cqa/?{url.split('?', 1)[1]}"  # the same token, through the proxy
        warm = wait_warm(service_url, args.people) if service_url else 0.0
        time.sleep(args.settle)
        if pid is None:  # Voila alone: its pid is the parent of the kernels
            import psutil

            pid = next(p.pid for p in psutil.process_iter(["cmdline"])
                       if any("voila" in c for c in (p.info["cmdline"] or [])) and url.split(":")[-1].strip("/")
                       in " ".join(p.info["cmdline"] or []))
        idle = memory(pid)
        load0 = os.getloadavg()[0]
        server_cpu0 = cpu_seconds(server_processes(pid))
        t0 = time.perf_counter()
        views, browser_cpu = asyncio.run(run_viewers(url, args.viewers, args.timeout))
        wall = time.perf_counter() - t0
        server_cpu = cpu_seconds(server_processes(pid)) - server_cpu0
        busy = memory(pid)
        stats = None
        if service_url:
            stats = service_json(service_url, "/stats")
    ok = [v for v in views if "interactive_s" in v]
    served_or_told = [v for v in views if min(v.get("interactive_s", 1e9), v.get("notice_s", 1e9)) <= 60.0]
    result = {
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), "cpus": os.cpu_count(),
        "service": args.service, "proxy": args.proxy, "viewers": args.viewers, "gallery_people": args.people,
        "startup_to_warm_s": round(warm, 1), "server_start_s": round(time.monotonic() - t_start - wall, 1),
        "load_avg_1m_before": round(load0, 2), "wall_s": round(wall, 1),
        "cpu_s_during_viewers": {"server (service + Voila + kernels)": round(server_cpu, 1),
                                 "browser (Playwright + Chromium)": round(browser_cpu, 1)},
        "interactive": f"{len(ok)} / {args.viewers}",
        "interactive_s": summary([v["interactive_s"] for v in ok]),
        "click_s": summary([v["click_s"] for v in views if "click_s" in v]),
        "notice_shown": sum("notice_s" in v for v in views), "busy_shown": sum("busy_s" in v for v in views),
        "notice_s": summary([v["notice_s"] for v in views if "notice_s" in v]),
        "interactive_or_notice_within_60s": f"{len(served_or_told)} / {args.viewers}",
        "memory_idle": idle, "memory_with_viewers": busy,
        "mb_per_extra_viewer_rss": round((busy["rss_mb"] - idle["rss_mb"]) / args.viewers),
        "mb_per_extra_viewer_pss": round((busy["pss_mb"] - idle["pss_mb"]) / args.viewers),
        "service_stats": stats,
        "per_viewer": [{k: (round(v, 2) if isinstance(v, float) else v) for k, v in r.items()} for r in views],
    }
    print(json.dumps(result, indent=1))
    (ROOT / "artifacts").mkdir(exist_ok=True)
    suffix = "_proxy" if args.proxy else "" if args.service else "_noservice"
    (ROOT / "artifacts" / f"dashboard_load_{args.viewers}{suffix}.json").write_text(
        json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
