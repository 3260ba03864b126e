"""Debian's nginx with the shipped ``deploy/nginx-cqa-workbench.conf`` in front of a running Voila.

Shared by the proxy test (``tests/test_deploy_nginx.py``) and the load benchmark
(``benchmarks/dashboard_load.py --proxy``): the configuration as shipped, with free ports and a
self-signed certificate made for the run. ``.ci/run`` installs nginx (``apt-get install -y nginx``).
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
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from workbench.serve import free_port

ROOT = Path(__file__).resolve().parents[2]
CONF = ROOT / "deploy" / "nginx-cqa-workbench.conf"
NGINX = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").is_file() else None)
"""Debian's nginx (None when not installed: the proxy test skips, saying so)."""


def render(tmp: Path, port: int, http_port: int, voila_port: int) -> Path:
    """The shipped server blocks with this test's ports and certificate, in a minimal nginx.conf."""
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=cqa",
                    "-keyout", str(tmp / "key.pem"), "-out", str(tmp / "cert.pem")], check=True, capture_output=True)
    server = (CONF.read_text()
              .replace("listen 443 ssl;", f"listen 127.0.0.1:{port} ssl;").replace("listen [::]:443 ssl;", "")
              .replace("listen 80;", f"listen 127.0.0.1:{http_port};").replace("listen [::]:80;", "")
              .replace("127.0.0.1:8866", f"127.0.0.1:{voila_port}")
              .replace("/etc/ssl/certs/cqa-workbench.pem", str(tmp / "cert.pem"))
              .replace("/etc/ssl/private/cqa-workbench.key", str(tmp / "key.pem"))
              .replace("/var/log/nginx/cqa-workbench.access.log", str(tmp / "access.log")))
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


@contextmanager
def running_nginx(tmp: Path, voila_url: str) -> Iterator[tuple[int, int]]:
    """Debian's nginx with the shipped configuration in front of ``voila_url``; yields (HTTPS, HTTP) ports."""
    port, http_port = free_port(), free_port()
    conf = render(tmp, port, http_port, int(voila_url.split(":")[2].split("/")[0]))
    args = [NGINX, "-c", str(conf), "-p", str(tmp), "-e", str(tmp / "error.log")]
    check = subprocess.run([*args, "-t"], capture_output=True, text=True)
    if check.returncode != 0:
        raise RuntimeError(f"nginx refuses the configuration: {check.stderr.strip()}")
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
        yield port, http_port
    finally:
        proxy.send_signal(signal.SIGTERM)
        proxy.wait(timeout=10)
