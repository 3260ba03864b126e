"""The kernel pool never hands out a broken kernel: every page has its dashboard.

``cqa workbench`` preheats ``default_pool_size`` kernels (10). Ten kernels started at once over
TCP could be given the same port; the kernel that lost died before it answered ``kernel_info``,
every automatic restart reused the port, and the viewer who drew it got a page without its
dashboard. The slow test starts the real workbench (service + Voila, the default pool, a small
gallery) once: every kernel must talk over IPC (Unix sockets: no port to share, so the race cannot
happen; the transport is asserted, which a repeated start would only check again), one pooled kernel
is killed (``kill -9``) before any page is asked for (jupyter_server restarts it empty, and the pool
must replace it rather than hand it out), and every kernel of the pool is requested as a page, which
must carry the dashboard's widget and a kernel of its own.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import signal
import time
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np
import pytest
from PIL import Image

from tests.support.headless import running_workbench, server_processes
from workbench.serve import DASHBOARD_DIR

ROOT = Path(__file__).resolve().parents[1]
POOL = json.loads((DASHBOARD_DIR / "voila.json").read_text())["VoilaConfiguration"]["default_pool_size"]
STARTS = 1  # the transport is asserted, not left to chance: more starts check nothing new
WIDGET = "application/vnd.jupyter.widget-view+json"


def kernels(pid: int) -> dict[str, tuple[int, dict]]:
    """kernel id -> (process id, connection file) of every kernel of the workbench started as ``pid``."""
    found = {}
    for p in server_processes(pid):
        try:
            cmd = p.cmdline()
        except Exception:  # noqa: BLE001 - ended meanwhile
            continue
        if any("ipykernel" in part for part in cmd) and "-f" in cmd:
            path = Path(cmd[cmd.index("-f") + 1])
            kid = re.fullmatch(r"kernel-(.+)\.json", path.name)
            if kid and path.is_file():
                found[kid.group(1)] = (p.pid, json.loads(path.read_text()))
    return found


def page(url: str) -> tuple[int, str]:
    """(status, HTML) of one whole dashboard page: Voila streams it until the dashboard has run."""
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=300)
    conn.request("GET", f"{parts.path}?{parts.query}")
    r = conn.getresponse()
    body = r.read().decode(errors="replace")
    conn.close()
    return r.status, body


@pytest.fixture()
def gallery(tmp_path):
    """Three noise 'people', LFW-framed (the centre crop: no MTCNN wait)."""
    rng = np.random.default_rng(0)
    for i in range(3):
        (tmp_path / "gallery" / f"P_{i}").mkdir(parents=True)
        Image.fromarray(rng.integers(0, 255, (160, 160, 3), dtype=np.uint8)).save(
            tmp_path / "gallery" / f"P_{i}" / "P_0001.jpg")
    (tmp_path / "gallery" / ".cqa-framing").write_text("lfw\n")
    return tmp_path / "gallery"


@pytest.mark.slow
def test_every_pooled_kernel_gives_its_page_the_dashboard(gallery):
    log = ROOT / "artifacts" / "hardening" / "pool.log"
    for start in range(STARTS):
        with running_workbench(log, preheat=True, args=("--refill-after=3600",), CQA_FACES=str(gallery)) as (
                url, _, pid):
            deadline = time.monotonic() + 240
            while len(pool := kernels(pid)) < POOL and time.monotonic() < deadline:
                time.sleep(0.5)
            assert len(pool) == POOL, f"start {start}: {len(pool)} of {POOL} pool kernels came up"
            assert {info["transport"] for _, info in pool.values()} == {"ipc"}, "kernels on TCP ports"
            killed = None
            if start == 0:  # a pooled kernel dies before anyone asks for it
                killed, (kpid, _) = next(iter(pool.items()))
                os.kill(kpid, signal.SIGKILL)
                time.sleep(4)  # jupyter_server's restarter notices (it polls every 3 s) and restarts it empty
            served = []
            for i in range(POOL):
                status, html = page(url)
                assert status == 200, (start, i, status)
                kid = re.search(r'"kernelId": "([^"]+)"', html)
                assert kid and html.count(WIDGET) >= 1, f"start {start}, page {i}: no dashboard"
                assert '"output_type": "error"' not in html, (start, i)  # no cell failed
                served.append(kid.group(1))
            assert killed not in served, "the pool handed out the killed (restarted, empty) kernel"
            assert len(set(served)) == POOL  # a kernel of its own for every page
