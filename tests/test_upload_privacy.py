"""Uploads are biometric data (issue 28, item 4): never on disk, never another viewer's, dropped on leaving.

An upload is a random-noise PNG made in memory (its bytes occur nowhere else). After it is analysed
(alone, in a pair, in a gallery scan) in-process and through the service's routes, every file under
the cache folder (``Settings.cache_root``) and the temp folder (``TMPDIR``) is read and searched for
slices of the PNG file, of its pixels, of their base64, and for their sha1 (the key the alignment
store would file it under). The gallery photos' sha1s *are* in the alignment store: the control
that the search reads the right files.
"""

from __future__ import annotations

import base64
import gc
import hashlib
import io
import tempfile
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cqa_core.settings import AlignMode, Settings
from workbench.wire import Face, face_ref


@pytest.fixture()
def places(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Path]:
    """A gallery of three noise 'people', and empty cache and temp folders this test owns."""
    monkeypatch.delenv("CQA_CHECKPOINT", raising=False)
    cache, tmp = tmp_path / "cache", tmp_path / "tmp"
    cache.mkdir()
    tmp.mkdir()
    monkeypatch.setenv("CQA_CACHE", str(cache))
    monkeypatch.setenv("TMPDIR", str(tmp))
    monkeypatch.setattr(tempfile, "tempdir", str(tmp))  # gettempdir() caches its first answer
    rng = np.random.default_rng(0)
    for i in range(3):
        d = tmp_path / "faces" / f"Person_{i}"
        d.mkdir(parents=True)
        Image.fromarray(rng.integers(0, 255, (160, 160, 3), dtype=np.uint8)).save(d / f"Person_{i}_0001.jpg")
    assert tempfile.gettempdir() == str(tmp)
    return {"faces": tmp_path / "faces", "cache": cache, "tmp": tmp}


def settings_of(places: dict[str, Path]) -> Settings:
    return Settings(faces=places["faces"], cache_root=places["cache"], torch_threads=1, people=3)


def upload_photo(seed: int = 7) -> tuple[bytes, np.ndarray]:
    """(PNG file bytes, its (120, 100, 3) pixels): noise, so no slice of either occurs by chance."""
    pixels = np.random.default_rng(seed).integers(0, 255, (120, 100, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG")
    return buf.getvalue(), pixels


def needles(data: bytes, pixels: np.ndarray) -> dict[str, bytes]:
    raw = pixels.tobytes()
    return {"file bytes": data[len(data) // 2:len(data) // 2 + 48], "pixels": raw[6000:6048],
            "pixels, base64": base64.b64encode(raw)[8000:8048],
            "sha1 of the file": hashlib.sha1(data).hexdigest().encode(),
            "sha1 of the pixels (the analysis key)":
                hashlib.sha1(str(pixels.shape).encode() + raw).hexdigest().encode()}


def files_holding(roots: list[Path], wanted: dict[str, bytes]) -> list[str]:
    """'path: what' for every file under ``roots`` that holds one of the ``wanted`` byte strings."""
    found = []
    for root in roots:
        for path in sorted(p for p in root.rglob("*") if p.is_file()):
            data = path.read_bytes()
            found += [f"{path}: {name}" for name, needle in wanted.items() if needle in data]
    return found


def upload(wb, name: str, data: bytes) -> None:
    """What the FileUpload widget does: set its value (the observer is guarded)."""
    wb.upload.value = ({"name": name, "type": "image/png", "size": len(data), "content": memoryview(data),
                        "last_modified": datetime.now(timezone.utc)},)


def gallery_digests(places: dict[str, Path]) -> dict[str, bytes]:
    return {p.name: hashlib.sha1(p.read_bytes()).hexdigest().encode() for p in sorted(places["faces"].rglob("*.jpg"))}


def test_an_upload_in_the_dashboard_leaves_nothing_on_disk(places):
    from workbench.start import open_workbench

    data, pixels = upload_photo()
    wb = open_workbench(settings_of(places))
    upload(wb, "mine.png", data)
    assert wb.current is not None and wb.current.name == "upload: mine.png", wb.messages.widget.value
    wb.second.value = "Person 1"  # a pair of the upload and a gallery face
    wb.tabs.selected_index = 1
    wb.view(3).scan_gallery()  # the lowest-quality list, the upload among them
    wb.view(4).show(wb.current)  # the mask lab edits the upload
    roots = [places["cache"], places["tmp"]]
    assert files_holding(roots, needles(data, pixels)) == []
    # the control: the gallery photos' alignments are stored, under their files' sha1
    stored = files_holding(roots, gallery_digests(places))
    assert len(stored) == 3 and all("alignment.csv" in s for s in stored), stored


def test_an_upload_through_the_service_leaves_nothing_on_disk(places):
    from starlette.testclient import TestClient

    from workbench.service.app import AnalysisService, create_app
    from workbench.service.engine import Engine
    from workbench.service.guard import Guard

    data, pixels = upload_photo(8)
    service = AnalysisService(Engine(settings_of(places)))
    client = TestClient(create_app(service, Guard(None)))
    mine = face_ref(Face("upload: mine.png", pixels, AlignMode.MTCNN))  # what a kernel sends: pixels
    gallery = [face_ref(Face(p.name, str(p))) for p in sorted(places["faces"].rglob("*.jpg"))]
    for body in ({"face": mine}, {"face": mine, "other": gallery[0], "methods": ["gradcam"]}):
        assert client.post("/analyse", json={**body, "viewer": "alice"}).status_code == 200
    assert client.post("/summaries", json={"faces": [mine, *gallery], "viewer": "alice"}).status_code == 200
    roots = [places["cache"], places["tmp"]]
    assert files_holding(roots, needles(data, pixels)) == []
    assert len(files_holding(roots, gallery_digests(places))) == 3  # the control, as above


def test_another_viewer_never_sees_an_upload(places):
    from workbench.app import Workbench
    from workbench.service.engine import Engine
    from workbench.session import Session

    settings = settings_of(places)
    engine = Engine(settings)  # one model host, two viewers
    alice, bob = Session(settings, backend=engine), Session(settings, backend=engine)
    assert alice.viewer != bob.viewer
    wa, wb = Workbench(session=alice), Workbench(session=bob)
    data, pixels = upload_photo()
    upload(wa, "alice.png", data)
    assert wa.current.name == "upload: alice.png"
    for w in (wa, wb):
        w.view(3).scan_gallery()
        w.view(2).histogram()
    titles = lambda w: [t.value.split("<br>")[0] for t in w.view(3).lowest_titles if t.value]  # noqa: E731
    assert sorted(titles(wa)) == ["Person 0", "Person 1", "Person 2", "upload: alice.png"]  # hers, in her scan
    assert sorted(titles(wb)) == ["Person 0", "Person 1", "Person 2"]  # not in his
    assert len(wa.view(2).hist.data[0].x) == 4 and len(wb.view(2).hist.data[0].x) == 3
    assert "upload: alice.png" not in wb.faces and "upload: alice.png" not in wb.second.options
    # the engine analysed it in alice's own cache only: the shared one never ran it
    key = hashlib.sha1(str(pixels.shape).encode() + pixels.tobytes()).hexdigest()
    assert list(engine.uploads) == [alice.viewer]
    assert not any(k.startswith(key) for k in engine.analyser.runs)
    assert any(k.startswith(key) for k in engine.uploads[alice.viewer][0].runs)


def test_an_upload_is_dropped_when_its_viewer_leaves(places):
    from workbench.service.engine import Engine
    from workbench.session import Session

    settings = settings_of(places)
    engine = Engine(settings)
    alice, bob = Session(settings, backend=engine), Session(settings, backend=engine)
    _, pixels = upload_photo()
    alice.analyse(Face("upload", pixels))
    bob.analyse(Face("upload", pixels))
    assert sorted(engine.uploads) == sorted([alice.viewer, bob.viewer])
    alice.close()  # her kernel ends
    assert list(engine.uploads) == [bob.viewer]
    alice.close()  # once only
    del bob  # a Session that is collected says bye too (and at its kernel's exit)
    gc.collect()
    assert list(engine.uploads) == []


def test_the_service_drops_a_viewers_uploads_when_it_says_bye(places):
    from starlette.testclient import TestClient

    from workbench.service.app import AnalysisService, create_app
    from workbench.service.engine import Engine
    from workbench.service.guard import Guard

    service = AnalysisService(Engine(settings_of(places)))
    client = TestClient(create_app(service, Guard(None)))
    _, pixels = upload_photo()
    mine = face_ref(Face("upload", pixels))
    for viewer in ("alice", "bob"):
        assert client.post("/analyse", json={"face": mine, "viewer": viewer}).status_code == 200
    assert client.get("/stats").json()["viewers_with_uploads"] == 2
    assert client.post("/viewers", json={"event": "bye", "id": "alice"}).status_code == 200
    assert list(service.engine.uploads) == ["bob"] and client.get("/stats").json()["viewers_with_uploads"] == 1


def test_a_silent_viewer_is_forgotten(places, monkeypatch):
    from workbench.service import engine as engine_mod
    from workbench.service import uploads as uploads_mod

    engine = engine_mod.Engine(settings_of(places))
    _, pixels = upload_photo()
    engine.analyse(Face("upload", pixels), viewer="gone")
    monkeypatch.setattr(uploads_mod, "UPLOAD_IDLE_S", 0.0)  # its kernel died without a word
    engine.analyse(Face("upload", pixels), viewer="here")
    assert list(engine.uploads) == ["here"]


def test_removing_an_upload_drops_its_analyses_at_once(places):
    from workbench.app import Workbench
    from workbench.service.engine import Engine
    from workbench.session import Session

    settings = settings_of(places)
    engine = Engine(settings)
    wb = Workbench(session=Session(settings, backend=engine))
    data, _ = upload_photo()
    upload(wb, "mine.png", data)
    assert wb.current.name == "upload: mine.png" and list(engine.uploads) == [wb.session.viewer]
    wb.remove_upload("upload: mine.png")
    assert "upload: mine.png" not in wb.faces and list(engine.uploads) == []  # the viewer is still here
    assert wb.current is not None and wb.messages.last_error is None  # a gallery face is shown again
