"""The workbench views without a browser: callbacks, in-place updates, the one error area."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from tests.support.galleries import noise_gallery

B = 4


@pytest.fixture()
def gallery(tmp_path, monkeypatch):
    """Five synthetic 250 x 250 'people' in person folders; the default model."""
    monkeypatch.delenv("CQA_CHECKPOINT", raising=False)
    monkeypatch.delenv("CQA_DEBUG", raising=False)
    noise_gallery(tmp_path / "faces", 5)
    return tmp_path / "faces"


@pytest.fixture()
def wb(gallery):
    from cqa_core.settings import Settings
    from workbench.start import open_workbench

    return open_workbench(Settings(faces=gallery))


def upload(wb, name: str, data: bytes) -> None:
    """What the FileUpload widget does: set its value (the observer is guarded)."""
    from datetime import datetime, timezone

    wb.upload.value = ({"name": name, "type": "image/jpeg", "size": len(data), "content": memoryview(data),
                        "last_modified": datetime.now(timezone.utc)},)


def test_first_face_is_shown_with_b_titled_cams(wb):
    fe = wb.view(0)
    assert wb.current is not None and wb.current.name == "Person 0"
    assert [t.value.split("q=")[0].count(f"branch {i}") for i, t in enumerate(fe.branch_titles)] == [1] * B
    assert all(bytes(im.value).startswith(b"\x89PNG") for im in fe.branch_images)
    assert "embedding norm" in fe.info.value
    # no error; the gallery is noise, so the one message is that no face was found (tests/test_no_face.py)
    assert wb.messages.last_error is None and "no face found" in wb.messages.widget.value
    from cqa_core.checkpoint import DEFAULT_WEIGHTS

    # the bundled default model when its weights are installed, else the flagged untrained one
    assert ("model: default model" if DEFAULT_WEIGHTS.exists() else "untrained model") in wb.widget.children[0].children[0].value


def test_header_shows_each_faces_overall_quality(wb):
    from cqa_core.explain.quality import overall_quality

    for name in ("Person 0", "Person 3"):
        wb.select(name)
        br = wb.session.analyse(wb.faces[name]).branches
        # hand-check the reading: attention-mass-weighted mean of the branch qualities
        mass = br.attention.sum(axis=(1, 2))
        expected = float((mass * br.quality).sum() / mass.sum())
        assert float(overall_quality(br.quality, br.attention)) == pytest.approx(expected, rel=1e-5)
        assert name in wb.face_quality.value and f"overall quality <b class='cqa-overall-quality'>{expected:.2f}</b>" in wb.face_quality.value


def test_select_updates_in_place_and_search_filters(wb):
    fe = wb.view(0)
    before, image_widget = fe.branch_images[0].value, fe.branch_images[0]
    wb.select("Person 3")
    assert fe.branch_images[0] is image_widget and fe.branch_images[0].value != before
    wb.search.value = "son 2"
    assert [c.children[1].tooltip for c in wb.gallery.children] == ["Person 2"]


def test_every_cam_source_and_opacity(wb):
    fe = wb.view(0)
    for source in ("similarity Grad-CAM", "occlusion", "attention"):
        fe.source.value = source
        assert wb.messages.last_error is None, wb.messages.widget.value
        assert source in fe.main_title.value
    fe.opacity.value = 0.9
    assert wb.messages.last_error is None


def test_every_tab_renders(wb):
    for i in range(5):
        wb.tabs.selected_index = i
        assert wb.messages.last_error is None, (i, wb.messages.widget.value)
    pair = wb.view(1)
    assert "no verdict" in pair.verdict.value and "cos =" not in pair.verdict.value  # noise: no face found
    pair.anyway.value = True  # compare the centres anyway
    assert "cos =" in pair.verdict.value
    assert np.asarray(pair.matrix.data[0].z).shape == (B + 1, B + 1)
    assert len(pair.loo.data[0].y) == B
    assert "q=" in wb.view(3).values.value


def test_mask_lab_shows_deltas_beside_clean_values(wb):
    wb.tabs.selected_index = 4
    lab = wb.view(4)
    for kind in lab.kind.options:
        lab.kind.value = kind
        lab.apply.click()
        assert wb.messages.last_error is None, (kind, wb.messages.widget.value)
        assert "clean q" in lab.values.value and "similarity to the clean face" in lab.values.value


def test_gallery_scans(wb):
    wb.tabs.selected_index = 3
    wb.view(3).scan.click()
    assert wb.messages.last_error is None
    assert "q0=" in wb.view(3).lowest_titles[0].value
    wb.tabs.selected_index = 2
    assert wb.view(2).hist_box.children == ()  # no empty histogram before the scan
    wb.view(2).scan.click()
    assert len(wb.view(2).hist.data[0].x) == 5 and wb.view(2).hist_box.children == (wb.view(2).hist,)


def test_corrupt_upload_is_a_plain_message_and_the_kernel_goes_on(wb):
    upload(wb, "corrupt.jpg", b"\xff\xd8\xff\xe0 not a jpeg")
    msg = wb.messages.widget.value
    assert "corrupt.jpg" in msg and "Traceback" not in msg
    wb.search.value = ""
    wb.gallery.children[1].children[1].click()  # a thumbnail still works, and clears the error
    assert wb.current.name == "Person 1" and wb.messages.last_error is None
    assert "corrupt.jpg" not in wb.messages.widget.value  # only Person 1's no-face note (noise has no face)


def test_oversize_upload_is_refused_before_decoding(wb, monkeypatch):
    import workbench.session as session

    monkeypatch.setattr(session, "MAX_UPLOAD_BYTES", 100)
    upload(wb, "big.jpg", b"x" * 101)
    assert "upload limit" in wb.messages.widget.value


def test_good_upload_becomes_the_current_face(wb):
    import io

    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(1).integers(0, 255, (300, 240, 3), dtype=np.uint8)).save(buf, "PNG")
    upload(wb, "mine.png", buf.getvalue())
    assert wb.messages.last_error is None, wb.messages.widget.value
    assert wb.current.name == "upload: mine.png" and "upload: mine.png" in wb.second.options


def test_debug_mode_shows_the_traceback(gallery):
    from cqa_core.settings import Settings
    from workbench.start import open_workbench

    wb = open_workbench(Settings(faces=gallery, debug=True))
    upload(wb, "corrupt.jpg", b"junk")
    assert "Traceback" in wb.messages.widget.value


def test_no_gallery_leaves_the_upload_box(tmp_path, monkeypatch):
    from cqa_core.settings import Settings
    from workbench.start import open_workbench

    wb = open_workbench(Settings(faces=tmp_path / "empty"))
    assert wb.current is None and "upload" in wb.messages.widget.value


class FakeTrainer:
    """Calls the Callback hooks the way cqa_core.training.trainer.Trainer does."""

    def __init__(self, model, steps: int = 4):
        self.model, self.steps, self.callbacks, self.step, self.stopped = model, steps, [], 0, False

    def request_stop(self):
        self.stopped = True

    def fit(self):
        for cb in self.callbacks:
            cb.on_train_start(self)
        while self.step < self.steps and not self.stopped:
            self.step += 1
            m = {"step": self.step, "loss": 10.0 / self.step, "div": 0.5, "train_acc": 0.1 * self.step}
            for cb in self.callbacks:
                cb.on_step(self, m)
            if self.step % 2 == 0:
                for cb in self.callbacks:
                    cb.on_eval(self, {"step": self.step, "accuracy": 0.5})
                    cb.on_epoch(self, {"step": self.step, "epoch": self.step // 2})
        for cb in self.callbacks:
            cb.on_train_end(self)
        return {}


def test_training_monitor_draws_curves_snapshots_and_stops():
    from cqa_core.settings import Settings
    from workbench.start import load_session_model
    from workbench.views.training import TrainingMonitor

    model = load_session_model(Settings())[0]
    probe = np.random.default_rng(0).integers(0, 255, (112, 112, 3), dtype=np.uint8)
    monitor = TrainingMonitor(probe=probe)
    trainer = FakeTrainer(model)
    monitor.fit(trainer)
    assert list(monitor.figure.data[0].y) == [10.0, 5.0, 10.0 / 3, 2.5]
    assert list(monitor.figure.data[3].y) == [0.5, 0.5]
    assert len(monitor.snapshots.children) == 2 and "done" in monitor.status.value
    trainer2 = FakeTrainer(model, steps=100)
    trainer2.callbacks.append(monitor)
    monitor.trainer = trainer2
    monitor.stop.click()
    trainer2.fit()
    assert trainer2.step == 0 and trainer2.stopped


def test_second_checkpoint_side_by_side(wb, tmp_path):
    from cqa_core.checkpoint import save_model
    from cqa_core.config import ModelConfig
    from cqa_core.model import create_model

    path = save_model(tmp_path / "other.safetensors", create_model(ModelConfig(stem="light", branches=4)).eval())
    wb.tabs.selected_index = 2
    panel = wb.view(2)
    panel.other_path.value = str(path)
    panel.compare.click()
    assert wb.messages.last_error is None, wb.messages.widget.value
    assert "other.safetensors" in panel.matrix_other.layout.title.text
    panel.other_path.value = str(tmp_path / "missing.safetensors")
    panel.compare.click()
    assert "missing.safetensors" in wb.messages.widget.value


@pytest.fixture(scope="module")
def onnx_model(tmp_path_factory):
    """Another (random, seeded) light CQA-Face exported to ONNX: a recognizer the workbench did not train."""
    import torch

    from cqa_core.config import ModelConfig
    from cqa_core.explain.toy import calibrate
    from cqa_core.export import export_onnx
    from cqa_core.model import create_model

    torch.manual_seed(3)  # calibrated BN statistics: a fresh model's fold into constants onnx2torch cannot read
    return str(export_onnx(calibrate(create_model(ModelConfig(stem="light", branches=4))).eval(),
                           tmp_path_factory.mktemp("onnx") / "other.onnx"))


def test_a_second_model_beside_the_first_in_the_pair_tab(wb, onnx_model):
    key = wb.add_model(onnx_model)
    assert wb.messages.last_error is None, wb.messages.widget.value
    assert ("other.onnx", key) in [tuple(o) for o in wb.model.options]
    wb.tabs.selected_index = 1
    pair = wb.view(1)
    pair.anyway.value = True  # the gallery is noise (no face found): compare the centres anyway
    pair.beside.value = key
    assert wb.messages.last_error is None, wb.messages.widget.value
    assert pair.second.widget.layout.display is None  # the second row is shown
    for row, name in ((pair.main, "default model"), (pair.second, "other.onnx")):
        assert name in row.verdict.value and "cos =" in row.verdict.value
        assert all(bytes(im.value).startswith(b"\x89PNG") for im in row.images)
        assert row.note.value == ""  # Grad-CAM of both: the ONNX model is white-box through onnx2torch
    main_cos = wb.session.analyse(wb.current, wb.other, methods=()).similarity
    other_cos = wb.session.analyse(wb.current, wb.other, methods=(), model=key).similarity
    assert f"{main_cos:.3f}" in pair.main.verdict.value and f"{other_cos:.3f}" in pair.second.verdict.value
    assert main_cos != pytest.approx(other_cos, abs=1e-3)  # two models, two answers


def test_a_plain_model_says_in_one_line_what_it_cannot_show(wb, onnx_model):
    key = wb.add_model(onnx_model)
    wb.model.value = key  # every tab now shows the ONNX model (its CQAOutput fields are not its embedding)
    assert "model: other.onnx" in wb.header.value
    fe = wb.view(0)
    assert "attention" not in fe.source.options and "similarity Grad-CAM" in fe.source.options
    assert "plain recognizer" in fe.plain.value and fe.branches.layout.display == "none"
    assert "embedding norm" in wb.face_quality.value and "no QAN" in wb.face_quality.value
    for i, cls in ((2, "summary"), (3, "values")):
        wb.tabs.selected_index = i
        assert "plain recognizer" in getattr(wb.view(i), cls).value
    wb.tabs.selected_index = 1
    assert "no branch terms" in wb.view(1).plain.value and wb.view(1).parts.layout.display == "none"
    wb.model.value = "default"
    wb.tabs.selected_index = 0  # a stale tab redraws when it is opened
    assert fe.plain.value == "" and "attention" in fe.source.options


def test_a_model_switch_redraws_every_tab_with_nothing_left_from_the_old_one(wb, onnx_model):
    for i in range(5):  # every tab drawn for CQA-Face first, its scans and an edit included
        wb.tabs.selected_index = i
    wb.view(2).histogram()
    wb.view(3).scan_gallery()
    wb.view(4).run()
    assert len(wb.view(2).hist.data[0].x) == 5 and wb.view(3).thumbs[0].widget.layout.visibility == "visible"
    assert "cos to clean" in wb.view(4).titles[1].value
    assert wb.messages.last_error is None, wb.messages.widget.value
    wb.model.value = wb.add_model(onnx_model)  # a plain recognizer: no branches, no QAN
    for i in range(5):
        wb.tabs.selected_index = i
        assert wb.messages.last_error is None, (i, wb.messages.widget.value)
    hidden = lambda parts: all(w.layout.display == "none" for w in parts)  # noqa: E731
    assert wb.view(0).branches.layout.display == "none" and "plain recognizer" in wb.view(0).plain.value
    assert wb.view(1).parts.layout.display == "none"
    div = wb.view(2)
    assert hidden(div.branch_parts) and len(div.hist.data[0].x) == 0 and div.hist_box.children == ()
    assert "plain recognizer" in div.summary.value
    q = wb.view(3)
    assert hidden(q.branch_parts) and all(t.widget.layout.visibility == "hidden" for t in q.thumbs)
    mask = wb.view(4)
    assert hidden(mask.branch_parts) and mask.titles[1].value == "edited: press apply" and "plain recognizer" in mask.values.value
    wb.model.value = "default"  # back: the branch views return
    for i in range(5):
        wb.tabs.selected_index = i
    assert not any(hidden([w]) for v in (div, q, mask) for w in v.branch_parts)
    assert "CAL penalty" in div.summary.value and "q=" in q.values.value
