"""The analysis service refuses before it works (issue 28): token, body size, fields, model allowlist,
time bound; server-assigned job ids; decoding limits that change no process-wide setting.

The routes run over a fake engine (no model: every answer can be worked out by hand) through
Starlette's in-process TestClient; the fake blocks on a gate where a test needs requests to wait.
"""

from __future__ import annotations

import base64
import io
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from starlette.testclient import TestClient

from cqa_core.data import imageio
from cqa_core.settings import Settings
from workbench.client import _chunks
from workbench.service.app import AnalysisService, create_app
from workbench.service.guard import NOT_SERVED, Guard, Limits, Models
from workbench.service.queue import JobQueue
from workbench.wire import FaceSummary

TOKEN = "s3cret-token-for-tests"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


class FakeEngine:
    """The engine's methods the routes call; answers derived from the request, by hand."""

    def __init__(self) -> None:
        self.gate = threading.Event()
        self.gate.set()
        self.calls: list[tuple[str, object]] = []
        self.uploads: dict[str, object] = {}  # viewer -> its uploads' cache (none here)
        self.settings = Settings()  # where runs started from the dashboard would go (none are started here)

    def info(self) -> dict:
        self.calls.append(("info", None))
        self.gate.wait(10)
        return {"label": "fake", "branches": 4}

    def load(self, spec: str) -> dict:
        self.calls.append(("load", spec))
        return {"spec": spec}

    def threshold(self, spec: str | None) -> dict:
        self.calls.append(("threshold", spec))
        return {"threshold": 0.5, "spec": spec}

    def analyse_many(self, faces, model=None, viewers=None) -> list:  # the tests' faces never decode this far
        raise AssertionError(f"unexpected analysis of {len(faces)} faces")

    def forget(self, viewer: str) -> bool:
        self.calls.append(("forget", viewer))
        return False

    def summaries(self, faces, model=None, viewer=None) -> list[FaceSummary]:
        self.calls.append(("summaries", model))
        self.gate.wait(10)  # (h, w, 3) pixels -> embedding_norm = h: each face's own number
        return [FaceSummary(np.full(4, 0.5, np.float32), 0.5, 0.25, float(f.source.shape[0])) for f in faces]


def pixels(h: int, w: int = 2) -> dict:
    return {"pixels": base64.b64encode(bytes(h * w * 3)).decode(), "shape": [h, w, 3], "align": "center",
            "name": "upload"}


def client_of(token: str | None = TOKEN, models: Models | None = None, **limits) -> tuple[FakeEngine, TestClient]:
    engine = FakeEngine()
    service = AnalysisService(engine, max_pixels=limits.pop("max_pixels", 40_000_000))  # type: ignore[arg-type]
    return engine, TestClient(create_app(service, Guard(token, models, Limits(**limits))))


# ---- the token ----------------------------------------------------------------------------------
ROUTES = [("post", "/info"), ("post", "/analyse"), ("post", "/summaries"), ("post", "/mask_effect"),
          ("post", "/model"), ("post", "/threshold"), ("post", "/viewers"), ("get", "/queue?id=x"), ("get", "/stats")]


def test_every_route_but_health_needs_the_token():
    engine, c = client_of()
    assert c.get("/health").status_code == 200  # the supervisor's probe: no token
    refused = "this analysis service needs its token (Authorization: Bearer ..., CQA_SERVICE_TOKEN)"
    for method, path in ROUTES:
        for headers in ({}, {"Authorization": "Bearer wrong-token"}, {"Authorization": TOKEN},
                        {"X-CQA-Token": TOKEN}):
            r = getattr(c, method)(path, headers=headers, **({"content": b"{not json"} if method == "post" else {}))
            assert (r.status_code, r.json()) == (401, {"error": refused}), (path, headers)
    assert engine.calls == []  # nothing ran
    assert c.post("/info", json={}, headers=AUTH).json() == {"label": "fake", "branches": 4, "any_model_path": False}
    assert c.get("/stats", headers={"authorization": f"bearer {TOKEN}"}).status_code != 401  # scheme: any case


# ---- bodies -------------------------------------------------------------------------------------
@pytest.mark.parametrize("body, message", [
    (b"", "empty request body: send a JSON object"),
    (b"   ", "empty request body: send a JSON object"),
    (b"{not json", "malformed JSON: Expecting property name enclosed in double quotes: line 1 column 2 (char 1)"),
    (b"[1, 2]", "the request body must be a JSON object, got a list"),
    (b'"face"', "the request body must be a JSON object, got a string"),
    (b"\xc3\x28", "malformed JSON: 'utf-8' codec can't decode byte 0xc3 in position 0: invalid continuation byte"),
])
def test_malformed_bodies_are_a_one_line_422(body, message):
    _, c = client_of()
    for path in ("/info", "/analyse", "/summaries", "/model"):
        r = c.post(path, content=body, headers=AUTH)
        assert (r.status_code, r.json()) == (422, {"error": message}), path


@pytest.mark.parametrize("path, body, message", [
    ("/analyse", {}, "/analyse needs the field 'face'"),
    ("/analyse", {"face": "me.jpg"}, "/analyse: 'face' must be an object, got a string"),
    ("/analyse", {"face": pixels(2), "methods": "gradcam"}, "/analyse: 'methods' must be a list or null, got a string"),
    ("/analyse", {"face": pixels(2), "methods": [1]}, "/analyse: 'methods' must be a list of names"),
    ("/analyse", {"face": pixels(2), "id": 7}, "/analyse: 'id' must be a string"),
    ("/summaries", {"faces": {}}, "/summaries: 'faces' must be a list, got an object"),
    ("/summaries", {"faces": [1]}, "/summaries: every face must be a JSON object"),
    ("/model", {"spec": 5}, "/model: 'spec' must be a string, got a number"),
    ("/mask_effect", {"face": pixels(2)}, "/mask_effect needs the field 'masked'"),
    ("/viewers", {"event": ["hello"]}, "/viewers: 'event' must be a string, got a list"),
    ("/analyse", {"face": {}}, "a face must be a JSON object with 'file' or 'pixels'"),
    ("/analyse", {"face": {"pixels": "AAAA", "shape": [5, 5, 3]}}, "pixels do not match the shape (5, 5, 3)"),
    ("/analyse", {"face": {"pixels": "AAAA", "shape": "big"}}, "<upload>: 'shape' must be 3 integers (height, width, 3)"),
])
def test_mistyped_fields_are_a_one_line_422(path, body, message):
    _, c = client_of()
    r = c.post(path, json=body, headers=AUTH)
    assert (r.status_code, r.json()) == (422, {"error": message})


def test_an_oversized_body_is_413_read_no_further():
    _, c = client_of(max_body=1000)
    big = b'{"faces": ["' + b"x" * 2000 + b'"]}'
    expected = (413, {"error": "request body over the 0.000954 MB limit"})
    r = c.post("/summaries", content=big, headers=AUTH)  # announced by its Content-Length
    assert (r.status_code, r.json()) == expected
    r = c.post("/summaries", content=iter([big[:600], big[600:]]), headers=AUTH)  # chunked: counted as read
    assert "content-length" not in r.request.headers and (r.status_code, r.json()) == expected
    assert c.post("/info", content=b"{}" + b" " * 990, headers=AUTH).status_code == 200  # 992 bytes: under
    assert Limits().max_body == 64 * 2**20


def test_summaries_take_at_most_max_faces_per_call_and_the_client_splits():
    _, c = client_of(max_faces=2)
    r = c.post("/summaries", json={"faces": [pixels(3), pixels(4), pixels(5)]}, headers=AUTH)
    assert (r.status_code, r.json()) == (422, {"error": "/summaries takes at most 2 faces per call, got 3"})
    rows = c.post("/summaries", json={"faces": [pixels(3), pixels(4)]}, headers=AUTH).json()
    assert [row["embedding_norm"] for row in rows] == [3.0, 4.0]
    assert [len(c) for c in _chunks([pixels(1)] * 130)] == [64, 64, 2]  # wire.MAX_FACES per call
    assert _chunks([]) == [[]]


def test_a_face_over_the_pixel_limit_is_refused_from_its_size():
    _, c = client_of(max_pixels=1000)
    r = c.post("/summaries", json={"faces": [pixels(40, 40)]}, headers=AUTH)
    assert (r.status_code, r.json()) == (422, {"error": "upload: 40x40 pixels exceed the 0.001 MP limit"})


# ---- models: an allowlist, one answer for missing and not allowed -------------------------------
def test_models_load_only_from_the_allowlist_and_missing_reads_like_forbidden(tmp_path: Path):
    folder = tmp_path / "models"
    folder.mkdir()
    (folder / "r50.onnx").write_bytes(b"x")
    (tmp_path / "secret.onnx").write_bytes(b"x")
    (tmp_path / "served.safetensors").write_bytes(b"x")
    (folder / "link.onnx").symlink_to(tmp_path / "secret.onnx")
    engine, c = client_of(models=Models(str(tmp_path / "served.safetensors"), folder))
    refused = (422, {"error": NOT_SERVED})
    for spec in (str(tmp_path / "secret.onnx"),  # exists, outside the folder
                 str(tmp_path / "missing.onnx"), str(folder / "missing.onnx"), "missing.onnx",  # do not exist
                 "../secret.onnx", str(folder / ".." / "secret.onnx"), "link.onnx",  # escape the folder
                 "/etc/passwd", str(folder), ""):
        r = c.post("/model", json={"spec": spec}, headers=AUTH)
        assert (r.status_code, r.json()) == refused, spec
        r = c.post("/summaries", json={"faces": [pixels(2)], "checkpoint": spec}, headers=AUTH)
        assert (r.status_code, r.json()) == refused, spec
        assert c.post("/threshold", json={"spec": spec}, headers=AUTH).json() == {"error": NOT_SERVED}
    assert engine.calls == []
    for spec, loaded in (("dlib", "dlib"), ("default", "default"), ("r50.onnx", str(folder / "r50.onnx")),
                         (str(folder / "r50.onnx"), str(folder / "r50.onnx")),
                         (str(tmp_path / "served.safetensors"), str(tmp_path / "served.safetensors"))):
        assert c.post("/model", json={"spec": spec}, headers=AUTH).json() == {"spec": loaded}
    assert c.post("/threshold", json={"spec": None}, headers=AUTH).json() == {"threshold": 0.5, "spec": None}
    _, bare = client_of(models=Models())  # no --models folder: only the served model and dlib
    assert bare.post("/model", json={"spec": "r50.onnx"}, headers=AUTH).json() == {"error": NOT_SERVED}


def test_the_engine_model_cache_is_lru_bounded():
    from workbench.service.models import MAX_MODELS, Recognizers

    loads = []
    default = object()
    models = Recognizers(default, load=lambda key: loads.append(key) or key)  # no model is loaded
    for i in range(MAX_MODELS + 3):
        models.get(f"/m/{i}.onnx")
    models.get(f"/m/{MAX_MODELS + 2}.onnx")  # the newest: still cached
    assert models.get("default") is default and models.get(None) is default
    assert len(models.others) == MAX_MODELS and len(loads) == MAX_MODELS + 3
    assert list(models.others)[0] == "/m/3.onnx"  # the oldest three went first


# ---- job ids: assigned by the queue -------------------------------------------------------------
def test_three_requests_sharing_an_id_each_get_their_own_answer():
    engine, c = client_of()
    engine.gate.clear()  # the worker holds the first job until all three wait
    with ThreadPoolExecutor(3) as pool:
        futures = [pool.submit(c.post, "/summaries", json={"faces": [pixels(h)], "id": "same"}, headers=AUTH)
                   for h in (3, 4, 5)]
        deadline = time.monotonic() + 10
        while c.get("/queue?id=same", headers=AUTH).json()["pending"] < 3 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert c.get("/queue?id=same", headers=AUTH).json() == {"ahead": 0, "pending": 3}
        engine.gate.set()
        answers = [f.result(timeout=10) for f in futures]
    assert [(r.status_code, r.json()[0]["embedding_norm"]) for r in answers] == [(200, 3.0), (200, 4.0), (200, 5.0)]


def test_the_queue_keys_jobs_itself_and_tags_only_place_them():
    started = threading.Event()
    release = threading.Event()

    def run(jobs):
        started.set()
        release.wait(10)
        return [j.body["n"] for j in jobs]

    q = JobQueue(run)
    futures = [q.submit("info", {"n": n}, tag="retry") for n in range(3)]
    assert started.wait(5) and len({j.rid for j in q.pending.values()}) == 3
    assert q.place("retry") == {"ahead": 0, "pending": 3} and q.place("other") == {"ahead": 0, "pending": 3}
    release.set()
    assert [f.result(timeout=5) for f in futures] == [0, 1, 2]


# ---- the time bound -----------------------------------------------------------------------------
def test_a_request_without_an_answer_in_time_is_a_503_and_a_waiting_one_is_dropped():
    engine, c = client_of(timeout_s=0.3)
    engine.gate.clear()  # the model is stuck on /info
    t0 = time.monotonic()
    r = c.post("/info", json={}, headers=AUTH)
    message = "no answer within 0.3 s: the analysis service is busy; try again in a minute"
    assert (r.status_code, r.json()) == (503, {"error": message}) and "retry-after" not in r.headers
    r = c.post("/threshold", json={"spec": "dlib"}, headers=AUTH)  # queued behind it, gives up too
    assert (r.status_code, r.json()) == (503, {"error": message})
    assert time.monotonic() - t0 < 3
    engine.gate.set()  # the stuck job ends; the one whose caller left is never run
    deadline = time.monotonic() + 5
    while c.get("/queue", headers=AUTH).json()["pending"] and time.monotonic() < deadline:
        time.sleep(0.05)
    assert c.post("/model", json={"spec": "dlib"}, headers=AUTH).json() == {"spec": "dlib"}
    assert ("threshold", "dlib") not in engine.calls and ("load", "dlib") in engine.calls


# ---- decoding limits: per call, no process-wide Pillow setting ------------------------------------
def test_decoding_changes_no_process_wide_pillow_setting(monkeypatch):
    from PIL import Image

    writes: list[str] = []

    class Watched:
        """PIL.Image as imageio sees it; records any attribute it sets (a process-wide change)."""

        def __getattr__(self, name):
            return getattr(Image, name)

        def __setattr__(self, name, value):
            writes.append(name)

    monkeypatch.setattr(imageio, "Image", Watched())
    buf = io.BytesIO()
    Image.fromarray(np.zeros((40, 40, 3), np.uint8)).save(buf, format="PNG")
    assert imageio.decode_image(buf.getvalue()).shape == (40, 40, 3)
    with pytest.raises(imageio.ImageTooLargeError, match="x.png: 40x40 = 0.0016 MP exceeds the 0.001 MP limit"):
        imageio.decode_image(buf.getvalue(), name="x.png", max_pixels=1000)
    assert writes == []
