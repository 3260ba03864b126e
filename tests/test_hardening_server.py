"""Voila's server under hostile requests: no token in its log, /logout works, failed logins are
limited, a client's kernels are capped, template paths stay inside their folder, and a login-free
loopback server answers only loopback Host names.

One Voila (the dashboard notebook, token login, at most one kernel per client address, no pool)
serves the login tests; a second, login-free one the Host test. Plain ``http.client``: status
codes and bodies, no browser. On loopback Voila trusts ``X-Real-IP`` (the shipped proxy sets it),
so each test speaks as its own client address.
"""

from __future__ import annotations

import http.client
import os
import re
import signal
import subprocess
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from cqa_core.settings import Settings
from tests.support.headless import wait_http
from workbench.access import Access
from workbench.gatekeeper import MAX_FAILED_LOGINS, TOO_MANY_LOGINS, safe_template_path
from workbench.serve import free_port, kernel_env, voila_command

ROOT = Path(__file__).resolve().parents[1]
TOKEN = "hardening-" + uuid.uuid4().hex


def test_template_paths_stay_in_their_folder():
    assert safe_template_path("lab/static/voila.js") and safe_template_path("base/static/a/b.css")
    for bad in ("../..", "..%2f..", "lab/static/../../x", "lab/static/", "lab/x/voila.js", "lab/static/..\\..\\x",
                "", "lab"):
        assert not safe_template_path(bad), bad


@contextmanager
def voila(tmp_path: Path, access: Access) -> Iterator[tuple[int, Path]]:
    """The dashboard's Voila (an empty gallery) on a free port; yields (port, log file)."""
    empty = tmp_path / "gallery"
    empty.mkdir(exist_ok=True)
    port, log_path = free_port(), tmp_path / f"voila-{access.login}.log"
    env = access.voila_env(kernel_env(Settings(faces=empty)))
    with open(log_path, "w") as log:
        proc = subprocess.Popen(voila_command(port, access=access), cwd=ROOT, env=env, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_http(f"http://127.0.0.1:{port}/voila/static/voila.js")
        yield port, log_path
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)


def get(port: int, path: str, client: str, headers: dict | None = None, method: str = "GET",
        body: str | None = None) -> tuple[int, str, http.client.HTTPResponse]:
    """(status, body text, response) of one request from the client address ``client``."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
    conn.request(method, path, body, {"X-Real-IP": client, **(headers or {})})
    r = conn.getresponse()
    text = r.read().decode(errors="replace")
    conn.close()
    return r.status, text, r


@pytest.mark.slow
def test_a_token_server_holds_under_hostile_requests(tmp_path):
    access = Access.choose("127.0.0.1", token=TOKEN, kernels_per_client=1)
    with voila(tmp_path, access) as (port, log_path):
        kid = str(uuid.uuid4())
        # -- failing requests that carry the token (query and Referer): never written to the log
        for path in (f"/no-such-page?token={TOKEN}", f"/voila/files/x.png?token={TOKEN}",
                     f"/api/kernels/{kid}?token={TOKEN}", f"/voila/templates/..%2f..?token={TOKEN}"):
            status, _, _ = get(port, path, "10.0.0.1", {"Referer": f"http://x/?token={TOKEN}"})
            assert status in (302, 403, 404), (path, status)  # 302: Voila sends other paths to its file route
        # -- template assets: a path outside the template folder is 404, without a login too
        assert get(port, "/voila/templates/..%2f..", "10.0.0.1")[0] == 404
        assert get(port, "/voila/templates/base/static/..%2f..%2f..%2fconf.json", "10.0.0.1")[0] == 404
        assert get(port, "/voila/templates/base/static/voila.js", "10.0.0.1")[0] == 200  # still served
        # -- /logout: a page, not a 500
        status, text, _ = get(port, f"/logout?token={TOKEN}", "10.0.0.1")
        assert status == 200 and "logged out" in text.lower(), (status, text[:300])
        # -- failed logins: MAX_FAILED_LOGINS wrong tokens, then every attempt is 429 (the right one too)
        for i in range(MAX_FAILED_LOGINS):
            assert get(port, f"/api/kernels/{kid}?token=wrong-{i}", "10.0.0.2")[0] == 403
        status, text, _ = get(port, f"/api/kernels/{kid}?token={TOKEN}", "10.0.0.2")
        assert status == 429 and TOO_MANY_LOGINS in text, (status, text[:300])
        assert get(port, f"/api/kernels/{kid}?token={TOKEN}", "10.0.0.3")[0] == 404  # another address: logged in
        # -- kernels per client: one page (its kernel) per address here; the next page is refused in a line
        status, text, _ = get(port, f"/?token={TOKEN}", "10.0.0.4")
        assert status == 200 and "cqa" in text.lower()
        status, text, _ = get(port, f"/?token={TOKEN}", "10.0.0.4")
        assert status == 429 and "this address already has 1 dashboard open" in text, (status, text[:300])
    log = log_path.read_text()
    assert TOKEN not in log, [line for line in log.splitlines() if TOKEN in line][:3]
    assert "token=[secret]" in log  # the failures were logged, scrubbed
    assert re.search(r"404 GET /api/kernels/[-0-9a-f]+\?token=\[secret\]", log)


@pytest.mark.slow
def test_a_login_free_loopback_server_answers_loopback_hosts_only(tmp_path):
    with voila(tmp_path, Access.choose("127.0.0.1", no_auth=True)) as (port, _):
        kid = str(uuid.uuid4())
        for host in (f"127.0.0.1:{port}", f"localhost:{port}", f"[::1]:{port}", "localhost"):
            assert get(port, f"/api/kernels/{kid}", "127.0.0.1", {"Host": host})[0] == 404, host  # past the check
        for host in (f"evil.example:{port}", "rebind.attacker.test", f"10.0.0.5:{port}", f"localhost.evil:{port}"):
            assert get(port, f"/api/kernels/{kid}", "127.0.0.1", {"Host": host})[0] == 403, host
            assert get(port, "/", "127.0.0.1", {"Host": host})[0] == 403, host  # the page: no kernel for it
