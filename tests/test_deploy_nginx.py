"""The shipped nginx configuration in front of ``cqa workbench`` (issue 28, item 3).

Debian's nginx runs ``deploy/nginx-cqa-workbench.conf`` as shipped, but with this test's ports
and a self-signed certificate, in front of the real ``cqa workbench --base-url /cqa/``. Through
it: the page, the kernel API and websockets work with the token and are refused without it; the
analysis service's routes are not reachable at all (status codes). Then headless Chromium opens
the dashboard through the proxy: with the token it becomes interactive and a click on a gallery
thumbnail updates the CAMs; without it (or with a wrong one) the login form stands in its place,
and the token typed into that form opens the dashboard.
"""

from __future__ import annotations

import http.client
import re
import socket
import ssl
import time
import uuid
from email.utils import parsedate_to_datetime
from pathlib import Path

import pytest

from tests.support.galleries import framed_noise_gallery
from tests.support.headless import (
    CAM,
    CHROMIUM,
    TOKEN,
    launch_chromium,
    memory,
    running_workbench,
    wait_src_change,
)
from tests.support.proxy import CONF, NGINX, running_nginx, via

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.slow


def test_the_config_routes_only_the_prefix():
    text = CONF.read_text()
    assert "proxy_pass http://127.0.0.1:8866;" in text and "location /cqa/" in text
    assert text.count("proxy_pass") == 1  # Voila only: no route to the analysis service
    assert "proxy_set_header Upgrade $http_upgrade;" in text and "listen 443 ssl;" in text
    assert "proxy_set_header X-Forwarded-Proto $scheme;" in text  # Voila trusts it on loopback: a Secure cookie


def directives(name: str) -> list[str]:
    """The values of every ``name`` directive of the shipped configuration (comments left out)."""
    lines = [line.split("#", 1)[0] for line in CONF.read_text().splitlines()]
    return re.findall(rf"(?:^|[;{{\s]){name}\s+([^;]*);", "\n".join(lines), re.MULTILINE)


def test_the_tls_settings_are_strict():
    ciphers = directives("ssl_ciphers")
    assert len(ciphers) == 1, "no ssl_ciphers: nginx's default accepts suites without forward secrecy (AES128-SHA)"
    suites = ciphers[0].strip().split(":")
    assert suites and all(s.startswith("ECDHE-") and ("GCM" in s or "CHACHA20" in s) for s in suites), suites
    assert directives("ssl_protocols") == ["TLSv1.2 TLSv1.3"]
    assert directives("server_tokens") == ["off", "off"]  # both server blocks: no version in headers or pages
    hsts = directives("add_header")
    assert any(h.startswith("Strict-Transport-Security") and "max-age=63072000" in h and h.endswith("always")
               for h in hsts), hsts
    assert directives("return")[0] == "301 https://$server_name$uri"  # the configured name; no query string
    fmt = " ".join(directives("log_format"))
    assert fmt.startswith("cqa_no_query") and "$uri" in fmt
    assert not any(v in fmt for v in ("$request ", '$request"', "$request_uri", "$args", "$query_string",
                                       "$http_referer")), fmt  # a page's URL (and referrer) carries ?token=
    assert directives("access_log") == ["/var/log/nginx/cqa-workbench.access.log cqa_no_query"] * 2


def needs_nginx() -> None:
    if NGINX is None:
        pytest.skip("nginx not installed (.ci/run installs Debian's: apt-get install -y nginx)")


def test_the_dashboard_through_nginx(tmp_path):
    needs_nginx()
    empty = tmp_path / "gallery"
    empty.mkdir()
    log = ROOT / "artifacts" / "test_deploy_nginx.log"
    args = ("--pool=1", "--login-days=0.5")
    with running_workbench(log, preheat=True, args=args, base_url="/cqa/", CQA_FACES=str(empty)) as (
            url, _, _), running_nginx(tmp_path, url) as (port, http_port):
        kid = str(uuid.uuid4())
        # without the token: the page goes to the login form, the APIs and websockets are refused
        r = via(port, "/cqa/")
        assert r.status == 302 and r.getheader("Location").startswith("/cqa/login?next=")
        assert via(port, f"/cqa/api/kernels/{kid}").status == 403
        assert via(port, f"/cqa/api/kernels/{kid}/channels", upgrade=True).status == 403
        assert via(port, f"/cqa/voila/query/{kid}", upgrade=True).status == 403
        # with it: the page, the kernel API (404: no such kernel, past the login) and a websocket upgrade
        page = via(port, f"/cqa/?token={TOKEN}")
        assert page.status == 200 and b"<html" in page.body.lower()
        auth = {"Authorization": f"token {TOKEN}"}
        assert via(port, f"/cqa/api/kernels/{kid}", auth).status == 404
        assert via(port, f"/cqa/voila/query/{kid}", auth, upgrade=True).status == 101
        # no route to the analysis service, nor to anything outside the prefix
        for path in ("/health", "/stats", "/queue", "/api/kernels"):
            assert via(port, path).status == 404, path
        assert via(port, "/cqa/stats").status == 302  # under the prefix: Voila's (login), not the service's
        assert via(port, "/").status == 302
        plain = http.client.HTTPConnection("127.0.0.1", http_port, timeout=10)
        plain.request("GET", f"/cqa/?token={TOKEN}", headers={"Host": "evil.example"})
        moved = plain.getresponse()
        assert moved.status == 301  # plain HTTP is sent to HTTPS: the configured name, never the token
        assert moved.getheader("Location") == "https://cqa.example.org/cqa/", moved.getheader("Location")
        plain.close()
        # TLS: HSTS, no version, a Secure login cookie lasting --login-days, no suite without forward secrecy
        assert page.getheader("Strict-Transport-Security") == "max-age=63072000"
        assert page.getheader("Server") == "nginx"
        login = [c for c in page.headers.get_all("Set-Cookie") if c.startswith("username-")]
        assert len(login) == 1 and "; Secure" in login[0] and "HttpOnly" in login[0], login
        xsrf = [c for c in page.headers.get_all("Set-Cookie") if c.startswith("_xsrf=")]
        assert len(xsrf) == 1 and "; Secure" in xsrf[0], xsrf  # the leave-beacon's cookie too
        expires = parsedate_to_datetime(re.search(r"expires=([^;]+)", login[0], re.IGNORECASE).group(1))
        assert abs(expires.timestamp() - time.time() - 12 * 3600) < 120, expires  # 0.5 days
        assert handshake(port, "ECDHE-RSA-AES128-GCM-SHA256") and not handshake(port, "AES128-SHA")
        assert not handshake(port, "ECDHE-RSA-AES128-SHA")  # forward secret, but CBC: not in the profile
        # the access log: the failed requests above carried the token (query, referrer); it never keeps it
        via(port, f"/cqa/api/kernels/{kid}?token={TOKEN}", {"Referer": f"https://x/cqa/?token={TOKEN}"})
        time.sleep(0.5)
        access = (tmp_path / "access.log").read_text()
        assert f"/cqa/api/kernels/{kid}" in access and TOKEN not in access and "?" not in access


def handshake(port: int, cipher: str) -> bool:
    """True when the proxy completes a TLS 1.2 handshake offering only ``cipher``."""
    ctx = ssl._create_unverified_context()
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    ctx.set_ciphers(f"{cipher}:@SECLEVEL=0")
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as raw, ctx.wrap_socket(raw):
            return True
    except ssl.SSLError:
        return False


@pytest.mark.browser
def test_a_browser_through_nginx(tmp_path):
    """With the token the page becomes interactive and a click updates the CAMs, and leaving the page ends
    its kernel (Voila's leave-beacon needs the _xsrf cookie: workbench.voila_server.DashboardPage);
    without the token, the login form."""
    needs_nginx()
    if CHROMIUM is None:
        pytest.skip("no chromium on PATH (.ci/run installs Debian's: apt-get install -y chromium)")
    pytest.importorskip("playwright.sync_api", reason="playwright python package not installed")
    from playwright.sync_api import (
        sync_playwright,  # optional: browser tests only (skipped above without it)
    )

    gallery = framed_noise_gallery(tmp_path / "gallery")  # four noise 'people', the centre crop, no MTCNN
    log = ROOT / "artifacts" / "test_deploy_nginx_browser.log"
    pool = ("--pool=2", "--refill-after=3600")  # a preheated kernel for each of the two dashboards, no refill
    with running_workbench(log, preheat=True, args=pool, base_url="/cqa/", CQA_FACES=str(gallery)) as (
            url, _, pid), running_nginx(tmp_path, url) as (port, _), sync_playwright() as p:
        browser = launch_chromium(p)
        try:
            origin = f"https://127.0.0.1:{port}"
            ctx = browser.new_context(ignore_https_errors=True, viewport={"width": 1400, "height": 1000})
            page = ctx.new_page()
            page.goto(f"{origin}/cqa/?token={TOKEN}", timeout=240_000)
            page.wait_for_selector(f"{CAM}[src^='blob:']", timeout=240_000)
            old = page.locator(CAM).first.get_attribute("src") or ""
            thumbs = page.locator("button.cqa-thumb")
            assert thumbs.count() == 4
            name = thumbs.nth(2).get_attribute("title")
            thumbs.nth(2).click()
            wait_src_change(page, CAM, old, timeout=120)
            assert page.inner_text(".cqa-selected-name") == name == "P 2"
            assert memory(pid)["kernels"] == 2  # this page's and the pool's other one (no refill for an hour)
            page.close(run_before_unload=True)  # the viewer leaves: its kernel (and its uploads) go at once
            deadline = time.monotonic() + 60
            while memory(pid)["kernels"] > 1 and time.monotonic() < deadline:
                time.sleep(0.5)
            assert memory(pid)["kernels"] == 1, "the page's kernel outlived the page"  # stock Voila: 403, 15 min
            ctx.close()
            for query in ("?token=not-the-token", ""):  # a fresh browser: no cookie from the page above
                ctx = browser.new_context(ignore_https_errors=True, viewport={"width": 1400, "height": 1000})
                page = ctx.new_page()
                resp = page.goto(f"{origin}/cqa/{query}", timeout=60_000)
                assert resp is not None and resp.ok and "/cqa/login" in page.url, page.url  # not a redirect loop
                assert page.locator("#password_input").count() == 1  # jupyter_server's login form, nothing else
                page.wait_for_timeout(2000)
                assert page.locator(CAM).count() == 0 and page.locator(".cqa-dashboard").count() == 0
            page.fill("#password_input", TOKEN)  # the form under the prefix logs in
            with page.expect_navigation(url=f"{origin}/cqa/", wait_until="commit", timeout=240_000):
                page.press("#password_input", "Enter", no_wait_after=True)
            page.wait_for_selector(f"{CAM}[src^='blob:']", timeout=240_000)
            assert page.url == f"{origin}/cqa/"
            ctx.close()
        finally:
            browser.close()
