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


def test_cqa_explain_prints_the_same_line(tmp_path, capsys, monkeypatch):
    from cqa_core.cli import main

    monkeypatch.delenv("CQA_CHECKPOINT", raising=False)
    photo = tmp_path / "blue.png"
    photo.write_bytes(blue_png())
    assert main(["explain", str(photo), "--out", str(tmp_path / "out")]) == 0
    out = capsys.readouterr().out
    assert f"{photo}: {NO_FACE}\n" in out
    assert Path(tmp_path / "out" / "analysis.json").is_file()
