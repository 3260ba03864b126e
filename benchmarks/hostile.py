"""Hostile probes against a live workbench and its analysis service; one line per probe.

    .venv/bin/python benchmarks/hostile.py [--people 6] [--no-browser]

Starts ``cqa workbench --base-url /cqa/`` (service + Voila, the default pool, a token,
``--kernels-per-client 2``) on a gallery of LFW photos linked under hostile names, puts Debian's
nginx with the shipped configuration in front when it is installed, and probes:

pool (every pooled kernel on IPC; one killed first; every page has the dashboard), execute (an
execute request sent to a viewer's kernel over its websocket gets no reply; kernel_info does),
names (a browser opens every tab with HTML-named faces and an upload: no script runs), photo (a
6000 x 6000 PNG through the service: time, answer size, service memory), token-log (failed
requests carrying the token, then the workbench's and nginx's logs searched for it), host (a
login-free loopback server asked with a foreign Host), tls (a non-forward-secret suite, HSTS,
the server's version, the port-80 redirect, the login cookie), session-end (a page's kernel
killed: seconds until the page says so), logout, login-limit (100 wrong tokens), kernel-cap,
traversal. Prints ``probe: PASS|FAIL  details``; JSON goes to artifacts/hostile.json.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import http.client
import json
import os
import re
import signal
import socket
import ssl
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from urllib.parse import urlsplit

import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.support.headless import (  # noqa: E402 - the repository's own test helpers
    CHROMIUM,
    SERVICE_TOKEN,
    TOKEN,
    launch_chromium,
    running_workbench,
    service_json,
)
from tests.support.proxy import NGINX, running_nginx, via  # noqa: E402
from tests.test_hardening_photo import big_png  # noqa: E402
from tests.test_hardening_pool import WIDGET, kernels  # noqa: E402
from tests.test_hardening_server import voila  # noqa: E402
from tests.test_hardening_xss import HOSTILE, LFW, UPLOAD  # noqa: E402
from workbench.access import Access  # noqa: E402

RESULTS: list[dict] = []


def report(probe: str, ok: bool, detail: str) -> None:
    RESULTS.append({"probe": probe, "ok": ok, "detail": detail})
    print(f"{probe:>12}: {'PASS' if ok else 'FAIL'}  {detail}", flush=True)


def get(port: int, path: str, client: str = "127.0.0.1", headers: dict | None = None) -> tuple[int, str, object]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
    conn.request("GET", path, headers={"X-Real-IP": client, **(headers or {})})
    r = conn.getresponse()
    body = r.read().decode(errors="replace")
    conn.close()
    return r.status, body, r


def probe_pool(port: int, pid: int) -> str:
    pool = kernels(pid)
    transports = sorted({info["transport"] for _, info in pool.values()})
    killed, (kpid, _) = next(iter(pool.items()))
    os.kill(kpid, signal.SIGKILL)
    time.sleep(4)
    served, good = [], 0
    for i in range(len(pool)):
        status, html, _ = get(port, f"/cqa/?token={TOKEN}", f"10.1.0.{i}")
        kid = re.search(r'"kernelId": "([^"]+)"', html)
        good += status == 200 and bool(kid) and WIDGET in html
        served.append(kid.group(1) if kid else "")
    report("pool", transports == ["ipc"] and good == len(pool) and killed not in served,
           f"{len(pool)} kernels over {'/'.join(transports)}; one killed first; {good}/{len(pool)} pages with the "
           f"dashboard; the killed one handed out: {killed in served}")
    return served[0]


async def execute(port: int, kernel_id: str) -> tuple[int, int]:
    """Messages answering (an execute_request, a kernel_info_request) on the kernel's websocket (a reply,
    busy/idle statuses, output: any message whose parent is the request)."""
    from tornado.websocket import websocket_connect  # Voila's own websocket client

    url = f"ws://127.0.0.1:{port}/cqa/api/kernels/{kernel_id}/channels?session_id=probe&token={TOKEN}"
    ws = await websocket_connect(url)
    ids = {}
    for kind, content in (("execute_request", {"code": "import os; print(os.getpid())", "silent": False,
                                               "store_history": False, "user_expressions": {}, "allow_stdin": False}),
                          ("kernel_info_request", {})):
        ids[kind] = uuid.uuid4().hex
        ws.write_message(json.dumps({"header": {"msg_id": ids[kind], "username": "probe", "session": "probe",
                                                "msg_type": kind, "version": "5.3", "date": ""},
                                     "parent_header": {}, "metadata": {}, "content": content, "channel": "shell",
                                     "buffers": []}))
    replies = {k: 0 for k in ids}
    end = time.monotonic() + 6
    while time.monotonic() < end:
        try:
            msg = await asyncio.wait_for(ws.read_message(), end - time.monotonic())
        except asyncio.TimeoutError:
            break
        if isinstance(msg, str):
            parent = json.loads(msg).get("parent_header", {}).get("msg_id")
            for kind, mid in ids.items():
                replies[kind] += parent == mid
    ws.close()
    return replies["execute_request"], replies["kernel_info_request"]


def probe_photo(service_url: str) -> None:
    data = big_png()
    spid = service_json(service_url, "/stats")["pid"]
    proc = psutil.Process(spid)
    before = peak = proc.memory_info().rss
    stop = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not stop.wait(0.05):
            peak = max(peak, proc.memory_info().rss)

    threading.Thread(target=sample, daemon=True).start()
    parts = urlsplit(service_url)
    body = json.dumps({"face": {"file": base64.b64encode(data).decode(), "name": "huge.png", "align": "center"}})
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=300)
    t0 = time.perf_counter()
    conn.request("POST", "/analyse", body, {"Authorization": f"Bearer {SERVICE_TOKEN}",
                                            "Content-Type": "application/json"})
    r = conn.getresponse()
    answer = r.read()
    seconds = time.perf_counter() - t0
    stop.set()
    after = proc.memory_info().rss
    mb = 2**20
    report("photo", r.status == 200 and len(answer) < 16 * mb and (peak - before) < 800 * mb,
           f"6000x6000 PNG of {len(data) / mb:.2f} MB: {r.status} in {seconds:.1f} s, answer {len(answer) / mb:.1f} MB, "
           f"service RSS {before / mb:.0f} -> peak {peak / mb:.0f} -> {after / mb:.0f} MB")


def probe_browser(url: str, pid: int, names: list[str]) -> None:
    from playwright.sync_api import sync_playwright  # optional: browser probes only

    with sync_playwright() as p:
        browser = launch_chromium(p)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000}, ignore_https_errors=True)
            page.goto(url, timeout=240_000)
            page.wait_for_selector("img.cqa-branch-cam[src^='blob:']", timeout=240_000)
            titles = page.locator("button.cqa-thumb").evaluate_all("bs => bs.map(b => b.title)")
            tabs = page.locator(".cqa-tabs .lm-TabBar-tab")
            for name in names:
                page.locator("button.cqa-thumb").nth(titles.index(name)).click()
                for i in range(tabs.count()):
                    tabs.nth(i).click()
                    page.wait_for_timeout(1500)
            with page.expect_file_chooser() as chooser:
                page.locator(".cqa-upload").click()
            photo = sorted(sorted(p for p in LFW.iterdir() if p.is_dir())[10].glob("*.jpg"))[0].read_bytes()
            chooser.value.set_files(files=[{"name": UPLOAD, "mimeType": "image/jpeg", "buffer": photo}])
            page.wait_for_timeout(5000)
            for i in range(tabs.count()):
                tabs.nth(i).click()
                page.wait_for_timeout(1500)
            ran = page.evaluate("() => window.cqaXss")
            report("names", ran is None, f"{len(names)} HTML-named gallery faces and an upload, {tabs.count()} tabs "
                   f"each: script ran: {ran is not None}")
            kid = page.evaluate("() => JSON.parse(document.getElementById('jupyter-config-data').textContent).kernelId")
            t0 = time.perf_counter()
            os.kill(kernels(pid)[kid][0], signal.SIGKILL)
            bar = page.wait_for_selector(".cqa-session-ended", timeout=60_000)
            report("session-end", True, f"kernel killed: the page said {bar.inner_text().strip()!r} after "
                   f"{time.perf_counter() - t0:.1f} s")
        finally:
            browser.close()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--people", type=int, default=6)
    ap.add_argument("--no-browser", action="store_true")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="cqa-hostile-"))
    gallery = tmp / "gallery"
    gallery.mkdir()
    (gallery / ".cqa-framing").write_text("lfw")
    people = sorted(p for p in LFW.iterdir() if p.is_dir())[: args.people]
    names = HOSTILE[: args.people]
    for i, person in enumerate(people):
        stem = names[i] if i < len(names) else person.name
        (gallery / f"{stem}.jpg").symlink_to(sorted(person.glob("*.jpg"))[0])
    log = tmp / "workbench.log"
    flags = ("--refill-after=3600", "--kernels-per-client=2")
    with running_workbench(log, preheat=True, args=flags, base_url="/cqa/", CQA_FACES=str(gallery)) as (
            url, service_url, pid):
        port = urlsplit(url).port
        deadline = time.monotonic() + 240
        while len(kernels(pid)) < 10 and time.monotonic() < deadline:
            time.sleep(0.5)
        kid = probe_pool(port, pid)
        executed, info = asyncio.run(execute(port, kid))
        report("execute", executed == 0 and info >= 1,
               f"execute_request to a viewer's kernel: {executed} messages in answer (kernel_info_request: {info})")
        probe_photo(service_url)
        for path in (f"/cqa/no-such-page?token={TOKEN}", f"/cqa/api/kernels/{uuid.uuid4()}?token={TOKEN}",
                     f"/cqa/voila/files/x.png?token={TOKEN}"):
            get(port, path, "10.2.0.1", {"Referer": f"http://x/cqa/?token={TOKEN}"})
        status, _, _ = get(port, f"/cqa/logout?token={TOKEN}", "10.2.0.2")
        report("logout", status == 200, f"/logout answers {status}")
        status, _, _ = get(port, "/cqa/voila/templates/..%2f..", "10.2.0.3")
        report("traversal", status == 404, f"/voila/templates/..%2f.. without a login answers {status}")
        t0 = time.perf_counter()
        codes = [get(port, f"/cqa/api/kernels/{uuid.uuid4()}?token=wrong{i}", "10.2.0.4")[0] for i in range(100)]
        right = get(port, f"/cqa/api/kernels/{uuid.uuid4()}?token={TOKEN}", "10.2.0.4")[0]
        report("login-limit", codes.count(429) >= 80 and right == 429,
               f"100 wrong tokens in {time.perf_counter() - t0:.2f} s: {codes.count(403)} refused (403), then "
               f"{codes.count(429)} limited (429); the right token then: {right}")
        pages = [get(port, f"/cqa/?token={TOKEN}", "10.2.0.5") for _ in range(3)]
        report("kernel-cap", [p[0] for p in pages] == [200, 200, 429],
               f"3 pages from one address (cap 2): {[p[0] for p in pages]}; "
               f"{getattr(pages[2][2], 'reason', '')!r}")
        if NGINX:
            with running_nginx(tmp, url) as (sport, http_port):
                page = via(sport, f"/cqa/?token={TOKEN}")
                via(sport, f"/cqa/api/kernels/{uuid.uuid4()}?token={TOKEN}", {"X-Real-IP": "10.3.0.1"})
                cookie = [c for c in page.headers.get_all("Set-Cookie") or [] if c.startswith("username-")]
                weak = ssl._create_unverified_context()
                weak.maximum_version = ssl.TLSVersion.TLSv1_2
                weak.set_ciphers("AES128-SHA:@SECLEVEL=0")
                try:
                    with socket.create_connection(("127.0.0.1", sport), timeout=10) as raw, weak.wrap_socket(raw):
                        weak_ok = True
                except ssl.SSLError:
                    weak_ok = False
                plain = http.client.HTTPConnection("127.0.0.1", http_port, timeout=10)
                plain.request("GET", f"/cqa/?token={TOKEN}", headers={"Host": "evil.example"})
                moved = plain.getresponse().getheader("Location")
                report("tls", not weak_ok and page.getheader("Strict-Transport-Security") is not None
                       and page.getheader("Server") == "nginx" and moved == "https://cqa.example.org/cqa/"
                       and bool(cookie) and "Secure" in cookie[0],
                       f"AES128-SHA accepted: {weak_ok}; HSTS: {page.getheader('Strict-Transport-Security')}; "
                       f"Server: {page.getheader('Server')}; port 80 -> {moved}; login cookie Secure: "
                       f"{bool(cookie) and 'Secure' in cookie[0]}")
                time.sleep(0.5)
                in_nginx = (tmp / "access.log").read_text().count(TOKEN)
        else:
            in_nginx = None
            report("tls", False, "nginx not installed: not probed")
        if not args.no_browser and CHROMIUM:
            probe_browser(url, pid, names)
    in_log = log.read_text().count(TOKEN)
    report("token-log", in_log == 0 and not in_nginx, f"failed requests carrying the token: {in_log} copies in the "
           f"workbench's log, {in_nginx} in nginx's access log")
    with voila(tmp, Access.choose("127.0.0.1", no_auth=True)) as (vport, _):
        foreign = get(vport, f"/api/kernels/{uuid.uuid4()}", headers={"Host": "rebind.attacker.test"})[0]
        local = get(vport, f"/api/kernels/{uuid.uuid4()}", headers={"Host": f"localhost:{vport}"})[0]
    report("host", foreign == 403 and local == 404, f"--no-auth on loopback: Host rebind.attacker.test -> {foreign}, "
           f"Host localhost -> {local}")
    out = ROOT / "artifacts" / "hostile.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(RESULTS, indent=1))
    return 0 if all(r["ok"] for r in RESULTS) else 1


if __name__ == "__main__":
    raise SystemExit(main())
