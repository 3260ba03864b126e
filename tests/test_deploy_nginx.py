"""The shipped nginx configuration in front of ``cqa workbench`` (issue 28, item 3), status codes only.

Debian's nginx runs ``deploy/nginx-cqa-workbench.conf`` as shipped, but with this test's ports
and a self-signed certificate, in front of the real ``cqa workbench --base-url /cqa/``. Through
it: the page, the kernel API and websockets work with the token and are refused without it; the
analysis service's routes are not reachable at all. (The browser walk through the proxy is not
here: ``tests/test_browser_dashboard.py`` drives a page without the proxy.)
"""

from __future__ import annotations

import base64
import http.client
import os
import shutil
import signal
import ssl
import subprocess
import time
import uuid
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "deploy" / "nginx-cqa-workbench.conf"
NGINX = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").is_file() else None)

pytestmark = pytest.mark.slow


def test_the_config_routes_only_the_prefix():
    text = CONF.read_text()
    assert "proxy_pass http://127.0.0.1:8866;" in text and "location /cqa/" in text
    assert text.count("proxy_pass") == 1  # Voila only: no route to the analysis service
    assert "proxy_set_header Upgrade $http_upgrade;" in text and "listen 443 ssl;" in text


def render(tmp: Path, port: int, http_port: int, voila_port: int) -> Path:
    """The shipped server blocks with this test's ports and certificate, in a minimal nginx.conf."""
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=cqa",
                    "-keyout", str(tmp / "key.pem"), "-out", str(tmp / "cert.pem")], check=True, capture_output=True)
    server = (CONF.read_text()
              .replace("listen 443 ssl;", f"listen 127.0.0.1:{port} ssl;").replace("listen [::]:443 ssl;", "")
              .replace("listen 80;", f"listen 127.0.0.1:{http_port};").replace("listen [::]:80;", "")
              .replace("127.0.0.1:8866", f"127.0.0.1:{voila_port}")
              .replace("/etc/ssl/certs/cqa-workbench.pem", str(tmp / "cert.pem"))
              .replace("/etc/ssl/private/cqa-workbench.key", str(tmp / "key.pem")))
    temp = "".join(f"    {k}_temp_path {tmp}/{k};\n" for k in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    conf = tmp / "nginx.conf"
    user = "user root;\n" if os.geteuid() == 0 else ""  # workers as root read this test's temporary files
    conf.write_text(f"{user}pid {tmp}/nginx.pid;\nerror_log {tmp}/error.log;\nevents {{}}\n"
                    f"http {{\n    access_log {tmp}/access.log;\n{temp}{server}\n}}\n")
    return conf


def via(port: int, path: str, headers: dict | None = None, upgrade: bool = False) -> http.client.HTTPResponse:
    """One HTTPS GET through the proxy (self-signed: not verified); redirects are not followed."""
    conn = http.client.HTTPSConnection("127.0.0.1", port, timeout=120, context=ssl._create_unverified_context())
    hdrs = {"Host": f"127.0.0.1:{port}", **(headers or {})}
    if upgrade:
        hdrs.update({"Connection": "Upgrade", "Upgrade": "websocket", "Sec-WebSocket-Version": "13",
                     "Sec-WebSocket-Key": base64.b64encode(os.urandom(16)).decode(),
                     "Origin": f"https://127.0.0.1:{port}"})
    conn.request("GET", path, headers=hdrs)
    resp = conn.getresponse()
    resp.body = resp.read(4096) if resp.status != 101 else b""  # type: ignore[attr-defined]
    conn.close()
    return resp


def test_the_dashboard_through_nginx(tmp_path):
    if NGINX is None:
        pytest.skip("nginx not installed (.ci/run installs Debian's: apt-get install -y nginx)")
    from tests.support.headless import TOKEN, running_workbench
    from workbench.serve import free_port

    empty = tmp_path / "gallery"
    empty.mkdir()
    port, http_port = free_port(), free_port()
    log = ROOT / "artifacts" / "test_deploy_nginx.log"
    with running_workbench(log, preheat=True, args=("--pool=1",), base_url="/cqa/", CQA_FACES=str(empty)) as (
            url, service_url, _):
        voila_port = int(url.split(":")[2].split("/")[0])
        conf = render(tmp_path, port, http_port, voila_port)
        args = [NGINX, "-c", str(conf), "-p", str(tmp_path), "-e", str(tmp_path / "error.log")]
        check = subprocess.run([*args, "-t"], capture_output=True, text=True)
        assert check.returncode == 0, check.stderr
        proxy = subprocess.Popen([*args, "-g", "daemon off;"],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        try:
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                try:
                    via(port, "/cqa/voila/static/voila.js")
                    break
                except OSError:
                    time.sleep(0.2)
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
            plain.request("GET", "/cqa/")
            assert plain.getresponse().status == 301  # plain HTTP is sent to HTTPS
            plain.close()
        finally:
            proxy.send_signal(signal.SIGTERM)
            proxy.wait(timeout=10)
