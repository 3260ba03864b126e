"""``cqa workbench`` reachable from a lab, with a login (issue 28, item 1).

The slow test starts the real ``cqa workbench --host 0.0.0.0 --base-url /cqa/`` (token from
``CQA_TOKEN``, one preheated kernel, an empty gallery) and asks every kind of route with and
without the token: the page, the kernel API, the kernel websocket, Voila's request-info websocket,
Voila's file route and the analysis service. Plain ``http.client``: status codes, no browser.
"""

from __future__ import annotations

import base64
import http.client
import os
import re
import uuid
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from cqa_core.cli import main
from workbench.access import Access, is_loopback, normal_base_url

ROOT = Path(__file__).resolve().parents[1]


# ---- the choice of access (no server) ----------------------------------------------------------
def test_no_auth_only_on_loopback(capsys):
    assert main(["workbench", "--host", "0.0.0.0", "--no-auth"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == ("cqa workbench: error: --no-auth is accepted only on a loopback address (127.0.0.1, ::1, "
                   "localhost), not --host 0.0.0.0: use a token (--token / CQA_TOKEN, or the one printed at start)")
    assert Access.choose("127.0.0.1", no_auth=True) == Access("127.0.0.1", "/")
    assert not Access.choose("::1", no_auth=True).login


def test_a_login_is_the_default_everywhere():
    made = Access.choose("0.0.0.0", "cqa")
    assert made.generated and len(made.token) >= 30 and made.base_url == "/cqa/"
    assert made.url(8866).endswith(f":8866/cqa/?token={made.token}")
    assert "--Voila.auto_token=True" in made.voila_args() and "--Voila.ip=0.0.0.0" in made.voila_args()
    assert made.voila_env({"JUPYTER_TOKEN_FILE": "/x", "A": "1"}) == {"A": "1", "JUPYTER_TOKEN": made.token}
    given = Access.choose("10.0.0.5", "/", token="lab-token-123")
    assert not given.generated and given.url(80) == "http://10.0.0.5:80/?token=...  (your --token / CQA_TOKEN)"
    assert "lab-token-123" not in " ".join(given.voila_args())  # never on a command line (ps shows those)
    pw = Access.choose("0.0.0.0", password_hash="argon2:$argon2id$v=19$m=10240,t=10,p=8$abc$def")
    assert pw.token is None and "--PasswordIdentityProvider.hashed_password=argon2:" in " ".join(pw.voila_args())
    with pytest.raises(ValueError, match="too short"):
        Access.choose("0.0.0.0", token="abc")
    with pytest.raises(ValueError, match="exclude each other"):
        Access.choose("127.0.0.1", token="lab-token-123", no_auth=True)


def test_loopback_and_base_urls():
    assert [is_loopback(h) for h in ("127.0.0.1", "127.1.2.3", "::1", "[::1]", "localhost", "0.0.0.0", "::",
                                     "10.0.0.5", "gpu-box")] == [True] * 5 + [False] * 4
    assert [normal_base_url(p) for p in ("", "/", "cqa", "/cqa", "/cqa/", "a/b")] == ["/", "/", "/cqa/", "/cqa/",
                                                                                     "/cqa/", "/a/b/"]
    with pytest.raises(ValueError, match="plain path"):
        normal_base_url("/cqa/../x")


# ---- the real server ------------------------------------------------------------------------------
def request(port: int, path: str, headers: dict | None = None, upgrade: bool = False) -> http.client.HTTPResponse:
    """One GET to 127.0.0.1:port (a websocket upgrade with ``upgrade``); redirects are not followed."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    hdrs = dict(headers or {})
    if upgrade:
        hdrs.update({"Connection": "Upgrade", "Upgrade": "websocket", "Sec-WebSocket-Version": "13",
                     "Sec-WebSocket-Key": base64.b64encode(os.urandom(16)).decode()})
    conn.request("GET", path, headers=hdrs)
    resp = conn.getresponse()
    resp.body = resp.read(4096) if resp.status != 101 else b""  # type: ignore[attr-defined]
    conn.close()
    return resp


@pytest.mark.slow
def test_every_route_refuses_a_request_without_the_token(tmp_path):
    from tests.support.headless import SERVICE_TOKEN, TOKEN, running_workbench

    empty = tmp_path / "gallery"
    empty.mkdir()
    log = ROOT / "artifacts" / "test_workbench_auth.log"
    with running_workbench(log, preheat=True, args=("--host=0.0.0.0", "--pool=1"), base_url="/cqa/",
                           CQA_FACES=str(empty)) as (url, service_url, _):
        port, sport = urlsplit(url).port, urlsplit(service_url).port
        kid = str(uuid.uuid4())  # a kernel id: the auth check comes before the lookup (404 once past it)
        # -- without the token: the page sends to the login page; the APIs and websockets answer 403
        r = request(port, "/cqa/")
        assert r.status == 302 and r.getheader("Location").startswith("/cqa/login?next=")
        for path in ("/cqa/api/kernels", "/cqa/api/contents", "/cqa/api/sessions"):  # Voila's page route
            assert request(port, path).status == 302, path
        assert request(port, f"/cqa/api/kernels/{kid}").status == 403
        assert request(port, f"/cqa/api/kernels/{kid}/channels", upgrade=True).status == 403
        assert request(port, f"/cqa/voila/query/{kid}", upgrade=True).status == 403  # closed by voila_server
        assert request(port, f"/cqa/?token={TOKEN}x").status == 302  # a wrong token is none
        assert request(port, "/cqa/voila/files/dashboard.ipynb").status == 403  # no file is served
        assert request(port, "/cqa/voila/files/x.png").status == 403
        # -- with the token (query, header or the cookie the first page set)
        page = request(port, f"/cqa/?token={TOKEN}")
        assert page.status == 200 and b"<html" in page.body.lower()
        cookie = "; ".join(re.match(r"[^;]+", c).group(0) for c in page.headers.get_all("Set-Cookie"))
        for auth in ({"Authorization": f"token {TOKEN}"}, {"Cookie": cookie}):
            assert request(port, f"/cqa/api/kernels/{kid}", auth).status == 404
            assert request(port, f"/cqa/api/kernels/{kid}/channels", auth, upgrade=True).status == 404
            assert request(port, f"/cqa/voila/query/{kid}", auth, upgrade=True).status == 101
        # -- the analysis service: bound to loopback, its own token
        assert request(sport, "/health").status == 200
        assert request(sport, "/stats").status == 401
        assert request(sport, "/stats", {"Authorization": f"Bearer {TOKEN}"}).status == 401  # not Voila's token
        assert request(sport, "/stats", {"Authorization": f"Bearer {SERVICE_TOKEN}"}).status == 200
    text = log.read_text()
    assert TOKEN not in text and SERVICE_TOKEN not in text  # given tokens are never printed
    assert "/cqa/?token=...  (your --token / CQA_TOKEN)" in text


@pytest.mark.slow
def test_a_password_logs_in_through_the_login_form(tmp_path):
    import subprocess
    import urllib.parse

    from jupyter_server.auth import passwd

    from cqa_core.settings import Settings
    from tests.support.headless import wait_http
    from workbench.serve import free_port, kernel_env, voila_command

    access = Access.choose("127.0.0.1", password_hash=passwd("lab pass phrase"))
    port = free_port()
    env = access.voila_env({**kernel_env(Settings()), "JUPYTER_TOKEN": "a-stray-token"})  # the caller's: dropped
    with open(tmp_path / "voila.log", "w") as log:
        proc = subprocess.Popen(voila_command(port, access=access), cwd=ROOT, env=env, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_http(f"http://127.0.0.1:{port}/voila/static/voila.js")
        kid = str(uuid.uuid4())
        assert request(port, f"/api/kernels/{kid}").status == 403
        assert request(port, f"/api/kernels/{kid}?token=a-stray-token").status == 403
        form = request(port, "/login")
        assert form.status == 200 and b"password" in form.body.lower()
        xsrf = re.search(r"_xsrf=([^;]+)", form.getheader("Set-Cookie")).group(1)
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        for password, status in (("wrong", 401), ("lab pass phrase", 302)):  # wrong: the form again, 401
            conn.request("POST", "/login", urllib.parse.urlencode({"password": password, "_xsrf": xsrf}),
                         {"Content-Type": "application/x-www-form-urlencoded", "Cookie": f"_xsrf={xsrf}"})
            r = conn.getresponse()
            r.read()
            assert r.status == status, password
        cookie = "; ".join(re.match(r"[^;]+", c).group(0) for c in r.headers.get_all("Set-Cookie"))
        conn.close()
        assert request(port, f"/api/kernels/{kid}", {"Cookie": cookie}).status == 404  # logged in
    finally:
        os.killpg(proc.pid, 15)
        proc.wait(timeout=20)
