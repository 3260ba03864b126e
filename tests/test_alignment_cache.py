"""The analysis cache key holds the alignment (issue 15.1), and MTCNN alignments persist on disk (15.2)."""

from __future__ import annotations

import numpy as np
import pytest

from cqa_core.data.align import CenterDetector
from cqa_core.data.align_store import AlignmentStore, align_key
from cqa_core.explain.analysis import Analyser


@pytest.fixture()
def photo(lfw_root):
    return str(lfw_root / "AJ_Cook" / "AJ_Cook_0001.jpg")


@pytest.mark.data
@pytest.mark.parametrize("first", ["mtcnn", "center"])
def test_mtcnn_and_centre_crops_are_two_cache_entries_in_either_order(calibrated_model, photo, first, tmp_path):
    an = Analyser(store=AlignmentStore(tmp_path))
    order = [None, CenterDetector()] if first == "mtcnn" else [CenterDetector(), None]
    got = [an(calibrated_model, photo, detector=d) for d in order]
    methods = [fa.align_method for fa in got]
    assert methods == (["mtcnn", "center"] if first == "mtcnn" else ["center", "mtcnn"])
    assert an.computed == 2 and len(an) == 2  # two entries, neither served from the other's
    assert not np.array_equal(got[0].aligned, got[1].aligned)
    assert not np.allclose(got[0].branches.quality, got[1].branches.quality)
    # asking again in the first order is served from the cache, each with its own alignment
    again = [an(calibrated_model, photo, detector=d) for d in order]
    assert an.computed == 2 and [fa.align_method for fa in again] == methods


def test_align_key_names_the_detector_and_its_settings():
    class Fake:
        thresholds, min_face_size, factor = (0.6, 0.7, 0.7), 20, 0.709

    class Tight(Fake):
        min_face_size = 40

    assert align_key(None).startswith("mtcnn-v") and align_key(CenterDetector()) == "center"
    assert align_key(Fake()) != align_key(Tight())  # same kind, other settings: another entry


@pytest.mark.data
def test_alignment_store_detects_once_then_rewarps_from_disk(photo, tmp_path, monkeypatch):
    import hashlib

    from cqa_core.data import align
    from cqa_core.data.imageio import load_image

    img = load_image(photo)
    digest = hashlib.sha1(open(photo, "rb").read()).hexdigest()
    fresh = align.align_image(img)
    first = AlignmentStore(tmp_path).align(img, digest)
    assert first.method == "mtcnn" and np.array_equal(first.image, fresh.image)

    def no_detector(*a, **k):
        raise AssertionError("MTCNN ran although the store holds this photo")

    monkeypatch.setattr(align, "detect_faces", no_detector)
    store = AlignmentStore(tmp_path)  # a new process reads the same file
    assert len(store) == 1
    hit = store.align(img, digest)
    assert hit.method == "mtcnn" and np.allclose(hit.affine, fresh.affine, atol=2e-3)  # landmarks kept to 1e-3 px
    assert np.abs(hit.image.astype(int) - fresh.image.astype(int)).max() <= 1  # landmarks stored to 1e-3 px
    header = (tmp_path / "alignment.csv").read_text().splitlines()[0]
    assert header.startswith("path,out,method,score,src_w,src_h,lm0_x")  # cqa align's columns
