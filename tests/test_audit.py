"""``cqa audit`` in one process: hand-checkable rows from a stub model, resuming, RecordIO, errors."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

pytest.importorskip("pyarrow", reason="cqa audit needs pyarrow (the audit extra)")

from cqa_core.evaluation.audit import run_audit  # noqa: E402
from cqa_core.evaluation.audit_source import open_source  # noqa: E402
from cqa_core.evaluation.audit_table import face_image, read_audit  # noqa: E402

GREYS = [5 + 12 * k for k in range(11)]  # one uniform grey face per value


class Stub(torch.nn.Module):
    """Embedding (3, 4, 0, ..) * (1 + mean pixel); S_hat (0.9, 0.1); branch 0 attends to the whole
    2 x 2 map, branch 1 to one cell (so overall = (0.9 * 4 + 0.1 * 1) / 5, CAL = 0.8 / 4)."""

    def __init__(self) -> None:
        super().__init__()
        self.p = torch.nn.Parameter(torch.zeros(()))

    def forward(self, x: torch.Tensor) -> SimpleNamespace:
        emb = torch.zeros(len(x), 8)  # (B, 8)
        emb[:, 0], emb[:, 1] = 3.0, 4.0
        maps = torch.zeros(len(x), 2, 2, 2)  # (B, 2, 2, 2)
        maps[:, 0], maps[:, 1, 0, 0] = 1.0, 1.0
        q = torch.tensor([[0.9, 0.1]]).repeat(len(x), 1)  # (B, 2)
        return SimpleNamespace(embedding=emb * (1 + x.mean((1, 2, 3)))[:, None], quality=q, attention_maps=maps)


def grey_folder(root: Path) -> Path:
    """11 uniform grey faces in 3 identity folders; an alignment.csv names two of them."""
    for k, v in enumerate(GREYS):
        d = root / f"id{k % 3}"
        d.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.full((112, 112, 3), v, np.uint8)).save(d / f"{k:02d}.png")
    (root / "alignment.csv").write_text("path,out,method\nid0/00.jpg,id0/00.png,mtcnn\nid1/01.jpg,id1/01.png,center\n")
    return root


def test_rows_by_hand(tmp_path: Path) -> None:
    src = open_source(str(grey_folder(tmp_path / "faces")))
    summary = run_audit(src, tmp_path / "a.parquet", Stub(), chunk=4, batch_size=3, progress=False)
    assert summary["faces"] == 11 and summary["chunks"] == 3 and not (tmp_path / "a.parquet.parts").exists()
    cols, meta = read_audit(tmp_path / "a.parquet")
    assert meta["kind"] == "folder" and meta["root"] == src.root and meta["faces"] == 11
    assert cols["index"].tolist() == list(range(11))
    names = sorted((f"id{k % 3}/{k:02d}.png", v) for k, v in enumerate(GREYS))  # FaceFolder order
    assert cols["path"].tolist() == [n for n, _ in names]
    grey = np.array([v for _, v in names], np.float64)
    np.testing.assert_allclose(cols["embedding_norm"], 5 * grey / 127.5, rtol=1e-5)  # 5 * (1 + v/127.5 - 1)
    np.testing.assert_allclose(cols["overall_quality"], (0.9 * 4 + 0.1) / 5, rtol=1e-5)
    np.testing.assert_allclose(cols["quality_0"], 0.9, rtol=1e-6)
    np.testing.assert_allclose(cols["quality_1"], 0.1, rtol=1e-6)
    np.testing.assert_allclose(cols["cal_penalty"], 0.2, rtol=1e-5)
    method = dict(zip(cols["path"], cols["align_method"], strict=True))
    assert method["id0/00.png"] == "mtcnn" and method["id1/01.png"] == "center" and method["id2/02.png"] == "pre-aligned"
    assert cols["identity"].tolist() == [n.split("/")[0] for n, _ in names]
    assert (face_image("folder", meta["root"], "id2/05.png") == GREYS[5]).all()


class Stop(Exception):
    pass


def test_a_stopped_run_resumes_to_the_same_file(tmp_path: Path) -> None:
    src = open_source(str(grey_folder(tmp_path / "faces")))
    run_audit(src, tmp_path / "whole.parquet", Stub(), chunk=2, batch_size=2, progress=False)

    def stop_after_two(c: int) -> None:
        if c == 1:
            raise Stop

    out = tmp_path / "resumed.parquet"
    with pytest.raises(Stop):
        run_audit(src, out, Stub(), chunk=2, batch_size=2, progress=False, on_chunk=stop_after_two)
    assert sorted(p.name for p in (tmp_path / "resumed.parquet.parts").glob("part_*")) == ["part_000000.parquet",
                                                                                          "part_000001.parquet"]
    with pytest.raises(ValueError, match="differs in chunk"):  # other settings: refused, not mixed
        run_audit(src, out, Stub(), chunk=3, batch_size=2, progress=False)
    seen: list[int] = []
    summary = run_audit(src, out, Stub(), chunk=2, batch_size=2, progress=False, on_chunk=seen.append)
    assert seen == [2, 3, 4, 5] and summary["chunks_done_before"] == 2
    assert out.read_bytes() == (tmp_path / "whole.parquet").read_bytes()
    with pytest.raises(Stop):
        run_audit(src, out, Stub(), chunk=2, batch_size=2, progress=False, on_chunk=stop_after_two)
    run_audit(src, out, Stub(), chunk=3, batch_size=2, progress=False, restart=True)  # --restart discards the parts
    assert len(read_audit(out)[0]["index"]) == 11


def test_recordio_gives_the_folders_readings(tmp_path: Path) -> None:
    from cqa_core.data.recordio import write_face_folder

    folder = grey_folder(tmp_path / "faces")
    write_face_folder(folder, tmp_path / "train")
    run_audit(open_source(str(folder)), tmp_path / "f.parquet", Stub(), chunk=5, progress=False)
    run_audit(open_source(str(tmp_path / "train.rec")), tmp_path / "r.parquet", Stub(), chunk=5, progress=False)
    f, _ = read_audit(tmp_path / "f.parquet")
    r, meta = read_audit(tmp_path / "r.parquet")
    assert meta["kind"] == "recordio" and r["path"].tolist() == [f"key:{k}" for k in range(1, 12)]
    assert set(r["align_method"]) == {"recordio"} and r["label"].tolist() == f["label"].tolist()
    for col in ("embedding_norm", "overall_quality", "cal_penalty"):
        np.testing.assert_array_equal(r[col], f[col])
    np.testing.assert_array_equal(face_image("recordio", meta["root"], "key:3"), face_image("folder", str(folder), f["path"][2]))


def test_bad_datasets_and_files(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="dataset not found"):
        open_source(str(tmp_path / "nowhere"))
    (tmp_path / "x.bin").write_bytes(b"junk")
    with pytest.raises(ValueError, match="not a folder of faces or a RecordIO"):
        open_source(str(tmp_path / "x.bin"))
    with pytest.raises(ValueError, match="not a Parquet audit file"):
        read_audit(tmp_path / "x.bin")
    with pytest.raises(FileNotFoundError):
        read_audit(tmp_path / "missing.parquet")


def test_jpeg_crops_decode_as_the_training_loader_does(lfw_root: Path, tmp_path: Path) -> None:
    """The browser's torch-free decode (Pillow) gives the pixels the cv2 loader gives, from a folder and a RecordIO."""
    from cqa_core.data.datasets import decode_chw
    from cqa_core.data.recordfile import IRHeader, RecordWriter, pack

    photos = sorted(lfw_root.glob("A*/*.jpg"))[:40]
    assert len(photos) == 40
    with RecordWriter(tmp_path / "t") as w:
        for k, p in enumerate(photos):
            w.write(k, pack(IRHeader(0, 0.0, k, 0), p.read_bytes()))
    for k, p in enumerate(photos):
        want = decode_chw(p.read_bytes(), "cv2").permute(1, 2, 0).numpy()  # (H, W, 3) uint8 RGB
        np.testing.assert_array_equal(face_image("folder", str(p.parent), p.name), want)
        np.testing.assert_array_equal(face_image("recordio", str(tmp_path / "t"), f"key:{k}"), want)
