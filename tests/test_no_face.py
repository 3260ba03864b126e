"""An upload with no face found says so (issue 28, item 4): the header, the message area, ``cqa explain``.

A plain blue photo has no face: MTCNN finds none and the alignment falls back to the centre crop
(``align_method == "center"``), whose numbers look like a face's. The note must say both things:
no face was found, and the numbers describe the centre of the photo.
"""

from __future__ import annotations

import io
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cqa_core.data.align import NO_FACE, no_face_note
from cqa_core.settings import AlignMode

BLUE = (40, 80, 200)


def blue_png() -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.full((200, 180, 3), BLUE, np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def test_the_note_is_for_a_photo_meant_for_mtcnn_that_fell_back():
    assert no_face_note("blue.png", "center") == f"blue.png: {NO_FACE}"
    assert "no face found" in NO_FACE and "centre of the photo" in NO_FACE
    assert no_face_note("a.jpg", "mtcnn") is None  # a face was found
    assert no_face_note("a.jpg", "identity") is None  # an aligned 112 x 112 crop
    assert no_face_note("a.jpg", "center", AlignMode.CENTER) is None  # the centre crop was asked for (LFW framing)


@pytest.fixture()
def wb(tmp_path, monkeypatch):
    """A dashboard over two LFW-framed gallery photos (centre crop on purpose: no note for them)."""
    from cqa_core.settings import Settings
    from workbench.start import open_workbench

    monkeypatch.delenv("CQA_CHECKPOINT", raising=False)
    monkeypatch.delenv("CQA_DEBUG", raising=False)
    monkeypatch.setenv("CQA_CACHE", str(tmp_path / "cache"))
    faces = tmp_path / "faces"
    rng = np.random.default_rng(0)
    for i in range(2):
        (faces / f"P_{i}").mkdir(parents=True)
        Image.fromarray(rng.integers(0, 255, (160, 160, 3), dtype=np.uint8)).save(faces / f"P_{i}" / "P_0001.jpg")
    (faces / ".cqa-framing").write_text("lfw\n")
    return open_workbench(Settings(faces=faces, cache_root=tmp_path / "cache", torch_threads=1))


def test_a_blue_upload_says_no_face_in_the_header_and_the_message_area(wb):
    assert wb.current.name == "P 0" and "no face" not in wb.face_quality.value  # a centre crop on purpose
    data = blue_png()
    wb.upload.value = ({"name": "blue.png", "type": "image/png", "size": len(data), "content": memoryview(data),
                        "last_modified": datetime.now(timezone.utc)},)
    assert wb.current.name == "upload: blue.png"
    note = f"upload: blue.png: {NO_FACE}"
    header, messages = wb.face_quality.value, wb.messages.widget.value
    assert note in header and "cqa-no-face" in header
    assert header.index("no face found") < header.index("overall quality")  # said before the number
    assert note in messages and "cqa-warning" in messages
    assert "no face found" in wb.view(0).info.value  # not "aligned by center" in small type
    wb.select("P 1")  # a gallery face: the note goes
    assert "no face" not in wb.face_quality.value and wb.messages.widget.value == ""


def test_cqa_explain_refuses_it_in_one_line_unless_told(tmp_path, capsys, monkeypatch):
    from cqa_core.cli import main

    monkeypatch.delenv("CQA_CHECKPOINT", raising=False)
    photo = tmp_path / "blue.png"
    photo.write_bytes(blue_png())
    assert main(["explain", str(photo), "--out", str(tmp_path / "no")]) == 3  # no face, no verdict
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"{photo}: {NO_FACE}") and "--no-face-ok" in lines[0], lines
    assert not (tmp_path / "no").exists()  # nothing written
    assert main(["explain", str(photo), "--out", str(tmp_path / "out"), "--no-face-ok"]) == 0
    out = capsys.readouterr().out
    assert f"{photo}: {NO_FACE}\n" in out
    assert Path(tmp_path / "out" / "analysis.json").is_file()


def landscape_png() -> bytes:
    """Sky over green hills with a sun: no face anywhere."""
    h, w = 240, 320
    y, x = np.mgrid[0:h, 0:w]
    img = np.zeros((h, w, 3), np.float64)
    img[:] = np.stack([90 + 0.4 * y, 150 + 0.3 * y, 235 - 0.1 * y], -1)[:, :, :]  # sky gradient
    hills = y > 150 + 25 * np.sin(x / 40.0)
    img[hills] = (60, 140, 50)
    img[(x - 250) ** 2 + (y - 50) ** 2 < 20 ** 2] = (250, 220, 80)  # the sun
    buf = io.BytesIO()
    Image.fromarray(img.clip(0, 255).astype(np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def test_a_landscape_gets_no_pair_verdict_unless_the_viewer_asks(wb):
    data = landscape_png()
    wb.upload.value = ({"name": "hills.png", "type": "image/png", "size": len(data), "content": memoryview(data),
                        "last_modified": datetime.now(timezone.utc)},)
    assert wb.current.name == "upload: hills.png" and NO_FACE in wb.face_quality.value
    wb.second.value = "P 0"
    wb.tabs.selected_index = 1  # Pair
    pair = wb.view(1)
    assert wb.messages.last_error is None, wb.messages.widget.value
    verdict = pair.main.verdict.value
    assert f"upload: hills.png: {NO_FACE}" in verdict and "no verdict" in verdict
    assert "cqa-similarity" not in verdict and "same person" not in verdict and "different people" not in verdict
    pair.anyway.value = True  # the viewer asks: the centre is compared, the warning stays
    verdict = pair.main.verdict.value
    assert "cqa-similarity" in verdict and NO_FACE in verdict and "no verdict:" not in verdict
    pair.anyway.value = False
    wb.select("P 1")  # two faces: a cosine without ticking anything
    assert "cqa-similarity" in pair.main.verdict.value and "no face" not in pair.main.verdict.value
