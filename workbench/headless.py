"""Drive the dashboard headless: a Voila subprocess and Debian's Chromium through Playwright.

Shared by the browser test (``tests/test_browser_dashboard.py``) and the latency benchmark
(``benchmarks/dashboard_latency.py``) so both measure the same thing the same way.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = Path("/usr/bin/chromium")
# Playwright cannot download its own browsers here; these flags keep Debian's Chromium off the
# network and quiet as root in a container.
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
def running_voila(log_path: Path, preheat: bool = False, **env_updates: str) -> Iterator[str]:
    """Serve the dashboard on a free port; yields its URL; kills Voila and its kernels on exit."""
    from workbench.serve import free_port, kernel_env, voila_command

    port = free_port()
    env = kernel_env()
    env.pop("CQA_CHECKPOINT", None)
    env.update(env_updates)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "w") as log:
        proc = subprocess.Popen(voila_command(port, preheat=preheat), cwd=ROOT, env=env, stdout=log,
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


def launch_chromium(playwright):
    """Headless Debian Chromium through a ``sync_playwright()`` handle."""
    return playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)


def wait_src_change(page, selector: str, old: str, timeout: float = 60.0) -> float:
    """Seconds until the first image under ``selector`` shows a picture other than ``old``."""
    t0 = time.perf_counter()
    page.wait_for_function(
        "([sel, old]) => { const e = document.querySelector(sel); return e && e.src && e.src !== old; }",
        arg=[selector, old], timeout=timeout * 1000, polling=5)
    return time.perf_counter() - t0
