"""Drive the dashboard headless: a Voila subprocess and Debian's Chromium through Playwright.

Shared by the browser tests (``tests/test_browser_dashboard.py``, ``tests/test_dashboard_load.py``)
and the latency benchmarks (``benchmarks/dashboard_latency.py``, ``benchmarks/dashboard_load.py``)
so all measure the same thing the same way. Chromium is Debian's, found on ``PATH``
(``.ci/run`` installs it); Playwright cannot download its own browsers here.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from cqa_core.settings import ENV, Settings
from workbench.serve import free_port, kernel_env, voila_command

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
"""The Chromium on PATH (None when none is installed: browser tests skip, saying so)."""
# Playwright cannot download its own browsers here; these flags keep Debian's Chromium off the
# network and quiet as root in a container.
TOKEN = secrets.token_urlsafe(16)
"""The login token of every ``running_workbench`` of this process (in the page URL it yields)."""
SERVICE_TOKEN = secrets.token_urlsafe(16)
"""Its analysis service's token (``service_json`` sends it)."""
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]


def wait_http(url: str, timeout: float = 90.0) -> None:
    """Poll until the server answers (or raise TimeoutError)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            with urllib.request.urlopen(url, timeout=5):
                return
        except OSError:
            time.sleep(0.3)
    raise TimeoutError(f"Voila did not answer at {url} within {timeout:.0f} s")


@contextmanager
def running_voila(log_path: Path, settings: Settings | None = None, preheat: bool = False,
                  pool: int | None = None) -> Iterator[str]:
    """Serve the dashboard (its kernels run the model in-process) on a free port; yields its URL;
    kills Voila and its kernels on exit. ``pool``: the preheated kernels (None: voila.json's ten,
    each running the model here: a test opening a page or two wants one)."""
    port = free_port()
    env = kernel_env(settings or Settings())
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "w") as log:
        proc = subprocess.Popen(voila_command(port, preheat=preheat, pool=pool), cwd=ROOT, env=env, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)
        try:
            wait_http(f"http://127.0.0.1:{port}/voila/static/voila.js")
            yield f"http://127.0.0.1:{port}/"
        finally:
            try:
                os.killpg(proc.pid, signal.SIGTERM)
                proc.wait(timeout=15)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass


@contextmanager
def running_workbench(log_path: Path, preheat: bool = True, args: tuple[str, ...] = (), base_url: str = "/",
                      **env_updates: str) -> Iterator[tuple[str, str, int]]:
    """``cqa workbench`` (analysis service + Voila) on free ports; yields (page URL, service URL, pid).

    It logs in with :data:`TOKEN` (the page URL carries ``?token=``; the first page sets the
    cookie) and its service takes :data:`SERVICE_TOKEN`; ``args`` are more ``cqa workbench``
    flags (``--base-url`` goes in ``base_url``). Everything it started (service, Voila, kernels)
    is one process group, killed on exit.
    """
    port, sport = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if k not in ENV.values()}  # the settings come from env_updates
    env.update({"CQA_TOKEN": TOKEN, "CQA_SERVICE_TOKEN": SERVICE_TOKEN, **env_updates})
    cmd = [sys.executable, "-m", "cqa_core.cli", "workbench", f"--port={port}", f"--service-port={sport}",
           f"--base-url={base_url}", *args]
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "w") as log:
        proc = subprocess.Popen(cmd + ([] if preheat else ["--no-preheat"]), cwd=ROOT, env=env, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)
        try:
            wait_http(f"http://127.0.0.1:{port}{base_url}voila/static/voila.js", timeout=240)
            yield f"http://127.0.0.1:{port}{base_url}?token={env['CQA_TOKEN']}", f"http://127.0.0.1:{sport}", proc.pid
        finally:
            left = server_processes(proc.pid)
            try:
                os.killpg(proc.pid, signal.SIGTERM)
                proc.wait(timeout=20)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                pass
            for p in left:  # kernels and a restarted service outlive a killed parent: end them too
                try:
                    p.kill()
                except Exception:  # noqa: BLE001 - already gone
                    pass


def service_json(service_url: str, path: str, timeout: float = 10.0):
    """GET ``path`` of a ``running_workbench``'s analysis service (with its token), as JSON."""
    req = urllib.request.Request(service_url + path, headers={"Authorization": f"Bearer {SERVICE_TOKEN}"})
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        return json.loads(resp.read())


def server_processes(pid: int) -> list:
    """psutil processes of a ``running_workbench``: ``cqa workbench``, the service, Voila, its kernels.

    Kernels run in their own sessions (jupyter_client starts them so), so this walks the process
    tree rather than the process group.
    """
    import psutil

    try:
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def dashboard_server(log_path: Path, settings: Settings | None = None, preheat: bool = False,
                     pool: int | None = None) -> Iterator[str]:
    """A fixture's body: skip without Chromium or Playwright, else a Voila dashboard's URL for the test
    (``preheat``, ``pool``: see :func:`running_voila`)."""
    import pytest  # the test runner: this helper is only ever a fixture's body

    if CHROMIUM is None:
        pytest.skip("no chromium on PATH (.ci/run installs Debian's: apt-get install -y chromium)")
    pytest.importorskip("playwright.sync_api", reason="playwright python package not installed")
    with running_voila(log_path, settings, preheat=preheat, pool=pool) as url:
        yield url


def open_dashboard(browser, url: str, width: int, height: int):
    """A new page of ``browser`` at ``width`` x ``height`` on the dashboard, its first branch CAM drawn."""
    page = browser.new_page(viewport={"width": width, "height": height})
    page.goto(url, timeout=180_000)
    page.wait_for_selector("img.cqa-branch-cam[src^='blob:']", timeout=180_000)
    return page


def launch_chromium(playwright):
    """Headless Debian Chromium through a ``sync_playwright()`` handle."""
    return playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)


def wait_src_change(page, selector: str, old: str, timeout: float = 60.0) -> float:
    """Seconds until the first image under ``selector`` shows a picture other than ``old``."""
    t0 = time.perf_counter()
    page.wait_for_function(
        "([sel, old]) => { const e = document.querySelector(sel); return e && e.src && e.src !== old; }",
        arg=[selector, old], timeout=timeout * 1000, polling=5)
    return time.perf_counter() - t0


# ---- many viewers at once (benchmarks/dashboard_load.py, tests/test_dashboard_load.py) ----------
CAM = "img.cqa-branch-cam"


def memory(pid: int) -> dict:
    """Kernel count and memory of every process of the server (MB)."""
    rss = pss = 0.0
    kernels = 0
    for p in server_processes(pid):
        try:
            info = p.memory_full_info()
            rss += info.rss / 2**20
            pss += getattr(info, "pss", info.rss) / 2**20
            kernels += any("ipykernel" in part for part in p.cmdline())
        except Exception:  # noqa: BLE001 - a process that ended meanwhile
            continue
    return {"kernels": kernels, "rss_mb": round(rss), "pss_mb": round(pss)}


async def viewer(browser, url: str, k: int, timeout: float) -> dict:
    """One viewer: open, wait for the CAMs (note a busy message), click thumbnail k + 1."""
    ctx = await browser.new_context(viewport={"width": 1400, "height": 1000}, ignore_https_errors=True)  # proxy: self-signed
    page = await ctx.new_page()
    r: dict = {"viewer": k}
    t0 = time.perf_counter()
    try:
        await page.goto(url, timeout=timeout * 1000)

        async def note() -> None:  # the first cell's loading / busy note, or the kernel's busy message
            sel = ".cqa-loading, .cqa-errors .cqa-info:has-text('busy')"
            el = await page.wait_for_selector(sel, state="visible", timeout=timeout * 1000)
            r.setdefault("notice_s", time.perf_counter() - t0)
            if "busy" in (await el.inner_text()):
                r.setdefault("busy_s", r["notice_s"])

        watcher = asyncio.ensure_future(note())
        await page.wait_for_selector(f"{CAM}[src^='blob:']", timeout=timeout * 1000)
        r["interactive_s"] = time.perf_counter() - t0
        watcher.cancel()
        old = await page.locator(CAM).first.get_attribute("src")
        t = time.perf_counter()
        await page.locator("button.cqa-thumb").nth(k + 1).click()
        await page.wait_for_function(
            "([sel, old]) => { const e = document.querySelector(sel); return e && e.src && e.src !== old; }",
            arg=[CAM, old], timeout=timeout * 1000, polling=10)
        r["click_s"] = time.perf_counter() - t
    except Exception as exc:  # noqa: BLE001 - a viewer that never became interactive is a result
        r["error"] = f"{type(exc).__name__}: {str(exc).splitlines()[0][:120]}"
        r["visible_text"] = (await page.locator("body").inner_text(timeout=2000))[:200] if not page.is_closed() else ""
    r["elapsed_s"] = time.perf_counter() - t0
    return r


def cpu_seconds(procs) -> float:
    """User + system CPU seconds of processes (and their waited-for children)."""
    total = 0.0
    for p in procs:
        try:
            t = p.cpu_times()
            total += t.user + t.system + t.children_user + t.children_system
        except Exception:  # noqa: BLE001 - a process that ended meanwhile
            continue
    return total


async def run_viewers(url: str, n: int, timeout: float) -> tuple[list[dict], float]:
    """Every viewer's result, and the CPU seconds the browser (Playwright + Chromium) spent."""
    import psutil
    from playwright.async_api import async_playwright

    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            before = cpu_seconds(psutil.Process().children(recursive=True))
            views = list(await asyncio.gather(*(viewer(browser, url, k, timeout) for k in range(n))))
            return views, cpu_seconds(psutil.Process().children(recursive=True)) - before
        finally:
            await browser.close()
