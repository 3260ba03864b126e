"""The analysis service (issue 12): same answers as in-process, one run per face, a thin client.

Uses Starlette's in-process TestClient for the routes, and a real uvicorn server in a
subprocess for the client, the no-torch kernel and the restart after a kill.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from cqa_core.explain import result as R
from cqa_core.settings import AlignMode, Settings
from workbench.wire import Face, decode, encode


def _fa(b: int = 2, branches: bool = True) -> R.FaceAnalysis:
    rng = np.random.default_rng(0)
    br = R.BranchAnalysis(attention=rng.random((b, 112, 112), dtype=np.float32),
                        attention_photo=rng.random((b, 20, 30), dtype=np.float32),
                        quality=np.array([0.25, 0.5][:b], np.float32), relation=np.eye(b), cal_matrix=np.eye(b),
                        gaussian=np.eye(b), iou=np.eye(b), entropy=np.ones(b), coverage=np.ones(b), cal=0.125,
                        region_shares={"nose": np.array([0.1, 0.2])})
    return R.FaceAnalysis(photo=rng.integers(0, 255, (20, 30, 3), dtype=np.uint8), aligned=np.zeros((112, 112, 3), np.uint8),
                        affine=np.eye(2, 3), align_method="mtcnn", embedding=rng.random(512, dtype=np.float32),
                        embedding_norm=3.5, maps={"attention": np.full((112, 112), 0.5, np.float32)},
                        branches=br if branches else None)


def test_wire_format_round_trips_a_pair_and_a_mask_effect():
    b = 2
    check = R.Check(True, "the map accounts for 99.5% of the change in similarity", {"delta": -1e-4, "gap": 0.02})
    pa = R.PairAnalysis(a=_fa(), b=_fa(branches=False), similarity=0.75,
                      maps={"gradcam": np.stack([np.ones((112, 112)), np.zeros((112, 112))])},
                      checks={"ig": [check, check._replace(ok=False)]},
                      branches=R.BranchPair(np.ones((b + 1, b + 1)) / 12, np.array([0.5, 0.25])))
    back = decode(encode(pa))
    assert isinstance(back, R.PairAnalysis) and back.similarity == 0.75 and back.checks == pa.checks
    assert back.b.branches is None and back.a.align_method == "mtcnn" and back.a.branches.cal == 0.125
    for name in ("attention", "attention_photo", "quality"):
        np.testing.assert_array_equal(getattr(back.a.branches, name), getattr(pa.a.branches, name))
    np.testing.assert_array_equal(back.a.photo, pa.a.photo)
    np.testing.assert_array_equal(back.branches.decomposition, pa.branches.decomposition)
    np.testing.assert_array_equal(back.branches.leave_one_out, [0.5, 0.25])
    np.testing.assert_array_equal(back.maps["gradcam"][0], 1.0)
    np.testing.assert_array_equal(back.maps["gradcam"][1], 0.0)
    np.testing.assert_array_equal(back.a.maps["attention"], 0.5)
    np.testing.assert_array_equal(back.a.branches.region_shares["nose"], [0.1, 0.2])
    single = decode(encode(_fa()))
    assert isinstance(single, R.FaceAnalysis) and single.branches.count == 2
    eff = R.MaskEffect(*(np.full(2, v) for v in (0.5, 0.25, -0.25, 0.125, 0.5)), 0.875,
                     np.zeros((112, 112, 3), np.uint8), np.ones((112, 112), np.float32))
    e2 = decode(encode(eff))
    assert isinstance(e2, R.MaskEffect) and e2.similarity == 0.875
    np.testing.assert_array_equal(e2.quality_delta, [-0.25, -0.25])


def test_wire_format_never_unpickles():
    import io
    import pickle

    buf = io.BytesIO()
    np.savez(buf, __meta__=np.frombuffer(json.dumps({"version": 1, "type": "R.FaceAnalysis"}).encode(), np.uint8),
             photo=np.array([object()], dtype=object))  # an object array needs pickle to load
    with pytest.raises(ValueError, match="pickle"):
        decode(buf.getvalue())
    del pickle


@pytest.fixture(scope="module")
def app():
    from workbench.service.app import AnalysisService, create_app
    from workbench.service.engine import Engine
    from workbench.service.guard import Guard

    service = AnalysisService(Engine(Settings(torch_threads=1)))
    return service, create_app(service, Guard(None))  # no token: the routes' answers (guard: test_service_security)


def _ref(path) -> dict:
    return {"file": base64.b64encode(open(path, "rb").read()).decode(), "name": str(path), "align": "center"}


@pytest.fixture(scope="module")
def photos(lfw_root):
    return [str(p) for p in sorted(lfw_root.glob("A*/*_0001.jpg"))[:6]]


@pytest.mark.data
def test_service_answers_what_in_process_analysis_gives(app, photos):
    from starlette.testclient import TestClient

    from workbench.service.engine import Engine

    service, asgi = app
    client = TestClient(asgi)
    local = Engine(Settings(torch_threads=1))
    remote = decode(client.post("/analyse", json={"face": _ref(photos[0]), "methods": ["gradcam"]}).content)
    mine = local.analyse(Face("a", photos[0], AlignMode.CENTER))
    assert remote.align_method == mine.align_method == "center"
    np.testing.assert_allclose(remote.branches.quality, mine.branches.quality, atol=1e-4)
    np.testing.assert_allclose(remote.embedding, mine.embedding, atol=1e-3)
    pair = decode(client.post("/analyse", json={"face": _ref(photos[0]), "other": _ref(photos[1]),
                                                "methods": ["gradcam"]}).content)
    local_pair = local.analyse(Face("a", photos[0], "center"), Face("b", photos[1], "center"))
    assert abs(pair.similarity - local_pair.similarity) < 1e-3
    assert abs(pair.branches.decomposition.sum() - pair.similarity) < 1e-4  # the exact split survives the wire


@pytest.mark.data
def test_a_pair_with_no_methods_gets_no_maps(app, photos):
    """``"methods": []`` (the Pair tab's row of a black-box model such as dlib) asks for no maps: the
    service must not turn it into Grad-CAM, which a black-box model cannot give."""
    from starlette.testclient import TestClient

    client = TestClient(app[1])
    pair = decode(client.post("/analyse", json={"face": _ref(photos[0]), "other": _ref(photos[1]),
                                                "methods": []}).content)
    assert pair.maps == {} and pair.checks == {}
    assert -1.0 <= pair.similarity <= 1.0


@pytest.mark.data
def test_each_face_runs_once_however_many_ask(app, photos):
    from concurrent.futures import ThreadPoolExecutor

    from starlette.testclient import TestClient

    service, asgi = app
    client = TestClient(asgi)
    before = service.engine.analyser.computed
    fresh = photos[2:6]  # not analysed by the other tests
    with ThreadPoolExecutor(8) as pool:  # 8 "viewers" ask for the same 4 faces at once
        codes = list(pool.map(lambda p: client.post("/analyse", json={"face": _ref(p)}).status_code, fresh * 8))
    assert codes == [200] * 32
    stats = client.get("/stats").json()
    assert service.engine.analyser.computed - before == 4 and stats["max_runs_per_face"] == 1
    rows = client.post("/summaries", json={"faces": [_ref(p) for p in fresh]}).json()
    assert len(rows) == 4 and service.engine.analyser.computed - before == 4  # summaries reuse the cache
    assert all(0.0 <= r["overall"] <= 1.0 and len(r["quality"]) == 4 for r in rows)


def test_bad_input_is_a_one_line_422_and_the_service_lives_on(app):
    from starlette.testclient import TestClient

    _, asgi = app
    client = TestClient(asgi)
    bad = {"file": base64.b64encode(b"not an image at all").decode(), "name": "x.jpg", "align": "mtcnn"}
    r = client.post("/analyse", json={"face": bad})
    assert r.status_code == 422 and "x.jpg" in r.json()["error"] and "\n" not in r.json()["error"]
    r = client.post("/model", json={"spec": "/nonexistent/model.safetensors"})
    assert r.status_code == 422 and "--models DIR" in r.json()["error"]  # this service keeps the allowlist
    assert client.post("/info", json={}).json()["branches"] == 4


def test_viewers_are_counted_ahead_of_each_other(app):
    service, _ = app
    assert service.viewer("hello", "a")["ahead"] == 0
    assert service.viewer("hello", "b")["ahead"] == 1
    assert service.viewer("hello", "c")["ahead"] == 2
    service.viewer("ready", "a")
    assert service.viewer("hello", "c") == {"ahead": 1, "loading": 2}


@pytest.mark.slow
@pytest.mark.data
def test_a_kernel_client_imports_no_torch_and_survives_a_service_restart(photos):
    from workbench.serve import Supervisor, free_port, service_command, wait_ready

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {**os.environ, "CQA_TORCH_THREADS": "1", "CQA_SERVICE_TOKEN": "kernel-secret"}
    sup = Supervisor(service_command(port, Settings()) + ["--no-warm"], env, url)
    sup.start()
    try:
        # a viewer kernel's process: Session over the service, no torch imported, same numbers
        code = f"""
import sys, json
from cqa_core.settings import Settings
from workbench.wire import Face
from workbench.session import Session
s = Session(Settings(service_url={url!r}, service_token="kernel-secret"))
f = Face("A", {photos[0]!r})
fa = s.analyse(f)
print(json.dumps({{"torch": "torch" in sys.modules, "method": fa.align_method, "b": s.branches,
                   "q": [float(x) for x in fa.branches.quality]}}))
"""
        out = json.loads(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                                        timeout=120).stdout.strip().splitlines()[-1])
        assert out == {"torch": False, "method": "mtcnn", "b": 4, "q": out["q"]} and len(out["q"]) == 4

        from workbench.client import ServiceClient

        notes: list = []
        client = ServiceClient(url, "kernel-secret")
        client.status = notes.append
        first = sup.proc.pid
        os.kill(first, signal.SIGKILL)  # the service dies; the supervisor starts another
        fa = client.analyse(Face("b", photos[1], "center"))  # waits through the restart, says so
        assert fa.align_method == "center" and sup.restarts == 1 and sup.proc.pid != first
        assert any(n and "restarting" in n for n in notes) and notes[-1] is None  # cleared when answered
        wait_ready(url, timeout=5)
    finally:
        sup.stop()


@pytest.mark.slow
def test_a_dead_service_is_a_plain_error_not_a_hang(monkeypatch):
    from workbench import client as client_mod
    from workbench.serve import free_port

    monkeypatch.setattr(client_mod, "RETRY_S", 2.0)
    c = client_mod.ServiceClient(f"http://127.0.0.1:{free_port()}")  # nothing listens there
    t0 = time.monotonic()
    with pytest.raises(client_mod.ServiceError, match="not answering"):
        c.info()
    assert time.monotonic() - t0 < 10
