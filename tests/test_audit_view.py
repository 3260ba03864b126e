"""The Quality tab's audit browser orders the file's rows and shows each face's own crop."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

pytest.importorskip("pyarrow", reason="cqa audit needs pyarrow (the audit extra)")

from cqa_core.evaluation.audit import run_audit  # noqa: E402
from cqa_core.evaluation.audit_source import open_source  # noqa: E402
from workbench.views.audit import AuditBrowser  # noqa: E402
from workbench.views.common import Messages  # noqa: E402

GREYS = [200, 20, 140, 80, 250, 50, 110]  # one uniform grey face each, in file order


class GreyStub(torch.nn.Module):
    """Branch 0 quality = the face's grey level / 255, branch 1 = 0.1; embedding norm 5 x that level."""

    def __init__(self) -> None:
        super().__init__()
        self.p = torch.nn.Parameter(torch.zeros(()))

    def forward(self, x: torch.Tensor) -> SimpleNamespace:
        level = (x.mean((1, 2, 3)) + 1) / 2  # (B,) grey / 255
        emb = torch.zeros(len(x), 4)  # (B, 4)
        emb[:, 0] = 5 * level
        maps = torch.ones(len(x), 2, 2, 2)  # (B, 2, 2, 2)
        return SimpleNamespace(embedding=emb, quality=torch.stack([level, torch.full_like(level, 0.1)], 1),
                               attention_maps=maps)


def test_browser_pages_through_the_lowest_faces(tmp_path: Path) -> None:
    for k, v in enumerate(GREYS):
        (tmp_path / "faces" / "p").mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.full((112, 112, 3), v, np.uint8)).save(tmp_path / "faces" / "p" / f"{k}.png")
    run_audit(open_source(str(tmp_path / "faces")), tmp_path / "a.parquet", GreyStub(), chunk=3, progress=False)
    browser = AuditBrowser(Messages(), k=4)
    browser.load(str(tmp_path / "a.parquet"))
    assert "7 faces" in browser.summary.value
    by_grey = sorted(GREYS)

    def shown() -> list[int]:  # the grey level of each visible crop, read back from its PNG
        out = []
        for im in browser.images:
            if im.layout.visibility == "visible":
                out.append(int(np.asarray(Image.open(io.BytesIO(im.value)))[..., :3].mean().round()))
        return out

    assert shown() == by_grey[:4]  # overall quality rises with the grey level: darkest first
    assert "overall quality=" in browser.titles[0].value and f"{(by_grey[0] / 255 + 0.1) / 2:.3f}" in browser.titles[0].value
    browser.start.value = 4
    assert shown() == by_grey[4:] and browser.titles[3].value == ""
    browser.start.value = 0
    browser.order.value = "quality_1"  # all 0.1: ties keep file order
    assert shown() == GREYS[:4]
    browser.order.value = "-cal_penalty"
    assert len(shown()) == 4


def test_a_bad_file_is_one_message(tmp_path: Path) -> None:
    messages = Messages()
    browser = AuditBrowser(messages)
    (tmp_path / "x.parquet").write_bytes(b"not parquet")
    browser.path.value = str(tmp_path / "x.parquet")
    browser.load_button.click()
    assert "not a Parquet audit file" in messages.last_error


def test_the_browser_and_its_reader_never_load_torch(tmp_path: Path) -> None:
    """A fresh interpreter imports the view and the audit reader, opens an audit and shows folder and
    RecordIO crops: torch is never loaded."""
    from cqa_core.data.recordio import write_face_folder

    for k, v in enumerate(GREYS[:3]):
        (tmp_path / "faces" / "p").mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.full((112, 112, 3), v, np.uint8)).save(tmp_path / "faces" / "p" / f"{k}.png")
    run_audit(open_source(str(tmp_path / "faces")), tmp_path / "a.parquet", GreyStub(), chunk=3, progress=False)
    write_face_folder(tmp_path / "faces", tmp_path / "train")
    code = f"""if True:
        import sys
        import workbench.views.audit, cqa_core.evaluation.audit_table
        from cqa_core.evaluation.audit_table import face_image
        from workbench.views.common import Messages
        browser = workbench.views.audit.AuditBrowser(Messages(), k=2)
        browser.load({str(tmp_path / "a.parquet")!r})
        shown = [im.layout.visibility for im in browser.images]
        grey = int(face_image("recordio", {str(tmp_path / "train")!r}, "key:2").mean())
        print(shown, grey, sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "torchvision")))
    """
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                       cwd=Path(__file__).resolve().parents[1])
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.strip() == f"['visible', 'visible'] {GREYS[1]} []"
