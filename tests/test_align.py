"""Alignment: the similarity fit, the fallbacks, and MTCNN on real LFW photos."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from cqa_core.data.align import (
    AlignedFace,
    NoFaceError,
    align_image,
    center_affine,
    invert_affine,
    load_image,
    transform_points,
    umeyama,
)
from cqa_core.data.template import ARCFACE_TEMPLATE


def _similarity(scale: float, angle_deg: float, tx: float, ty: float) -> np.ndarray:
    a = np.deg2rad(angle_deg)
    return np.array([[scale * np.cos(a), -scale * np.sin(a), tx], [scale * np.sin(a), scale * np.cos(a), ty]])


def test_umeyama_recovers_a_known_similarity() -> None:
    m = _similarity(0.5, 20.0, 10.0, -4.0)
    src = np.array([[100.0, 120], [150, 118], [125, 140], [105, 165], [148, 163]])
    dst = transform_points(m, src)
    assert np.allclose(umeyama(src, dst), m, atol=1e-9)
    assert np.allclose(transform_points(invert_affine(m), dst), src)


def test_weighted_umeyama_ignores_zero_weight_points() -> None:
    # Two points fix a similarity exactly: with the other three weighted 0 the eyes land exactly
    # on their targets whatever the nose and mouth say.
    src = np.array([[100.0, 120], [150, 118], [125, 140], [105, 165], [148, 163]])
    dst = ARCFACE_TEMPLATE.astype(float) + [[0, 0], [0, 0], [9, -7], [-6, 5], [8, 8]]
    m = umeyama(src, dst, weights=[1, 1, 0, 0, 0])
    assert np.allclose(transform_points(m, src[:2]), dst[:2], atol=1e-9)
    # Integer weights act like repeated points.
    rep = umeyama(np.vstack([src, src[:2]]), np.vstack([dst, dst[:2]]))
    assert np.allclose(umeyama(src, dst, weights=[2, 2, 1, 1, 1]), rep, atol=1e-9)


def test_umeyama_never_reflects() -> None:
    src = ARCFACE_TEMPLATE.astype(float)
    mirrored = src * [-1, 1]  # a mirror image cannot be reached by a similarity
    m = umeyama(src, mirrored)
    assert np.linalg.det(m[:, :2]) > 0


class _FakeDetector:
    """Returns fixed faces (boxes, probs, landmarks) like facenet-pytorch's MTCNN.detect."""

    def __init__(self, faces: list[tuple[list[float], float, np.ndarray]]) -> None:
        self.faces = faces

    def detect(self, img: np.ndarray, landmarks: bool = True):
        if not self.faces:
            return None, [None], None
        return (np.array([f[0] for f in self.faces]), np.array([f[1] for f in self.faces]),
                np.array([f[2] for f in self.faces]))


def test_largest_face_is_warped_onto_the_template() -> None:
    small = transform_points(_similarity(0.5, 0, 10, 10), ARCFACE_TEMPLATE)  # a 56 px face
    big = transform_points(_similarity(2.0, 10, 60, 40), ARCFACE_TEMPLATE)  # a 224 px face
    det = _FakeDetector([([10, 10, 66, 66], 0.99, small), ([60, 40, 284, 264], 0.90, big)])
    img = np.zeros((300, 300, 3), np.uint8)
    face = align_image(img, detector=det)
    assert isinstance(face, AlignedFace) and face.method == "mtcnn" and face.score == pytest.approx(0.9)
    assert np.allclose(transform_points(face.affine, big), ARCFACE_TEMPLATE, atol=1e-4)
    assert face.image.shape == (112, 112, 3) and face.image.dtype == np.uint8
    assert face.source_size == (300, 300)
    best = align_image(img, detector=det, pick="best")
    assert np.allclose(transform_points(best.affine, small), ARCFACE_TEMPLATE, atol=1e-4)


def test_warp_moves_pixels_where_the_affine_says() -> None:
    img = np.zeros((250, 250, 3), np.uint8)
    pts = transform_points(_similarity(2.0, 0, 20, 30), ARCFACE_TEMPLATE)
    x, y = np.round(pts[2]).astype(int)  # paint the nose tip
    img[y - 3:y + 4, x - 3:x + 4] = [255, 0, 0]
    face = align_image(img, detector=_FakeDetector([([0, 0, 250, 250], 0.99, pts)]))
    nx, ny = np.round(ARCFACE_TEMPLATE[2]).astype(int)
    assert face.image[ny, nx].tolist() == [255, 0, 0]
    assert face.image[10, 10].tolist() == [0, 0, 0]


def _smooth(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """A smooth RGB pattern (bilinear interpolation of it is near exact): (..., 3) floats in [0, 255]."""
    return np.stack([128 + 60 * np.sin(x / 9.0) + 50 * np.cos(y / 13.0),
                     128 + 90 * np.sin((x + y) / 17.0),
                     128 + 40 * np.cos(x / 11.0) - 60 * np.sin(y / 7.0)], axis=-1)


def test_warp_round_trip_with_rotation_translation_and_scale() -> None:
    from cqa_core.data.align import warp
    from cqa_core.explain.cams import warp_to_photo

    # photo (x, y) -> aligned: rotate 25 deg, scale 0.55, and shift the photo point (170, 160) to the
    # crop centre (56, 56); every crop pixel then comes from inside the 360 x 340 photo
    w, h = 360, 340
    m = _similarity(0.55, 25.0, 0.0, 0.0)
    m[:, 2] = np.array([56.0, 56.0]) - transform_points(m, np.array([[170.0, 160.0]]))[0]
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float64)
    photo = np.clip(np.round(_smooth(xs, ys)), 0, 255).astype(np.uint8)  # (h, w, 3)
    inv = invert_affine(m)
    corners = transform_points(inv, np.array([[0, 0], [111, 0], [0, 111], [111, 111]], float))
    assert (corners > 2).all() and (corners[:, 0] < w - 3).all() and (corners[:, 1] < h - 3).all()
    crop = warp(photo, m).astype(np.float64)  # (112, 112, 3)
    # 1. aligned pixel (u, v) shows the photo at M^-1 (u, v), worked out from the pattern, not the code
    v, u = np.mgrid[0:112, 0:112].astype(np.float64)
    src = transform_points(inv, np.stack([u.ravel(), v.ravel()], 1))  # (112*112, 2) photo points
    expected = _smooth(src[:, 0], src[:, 1]).reshape(112, 112, 3)
    assert np.abs(crop - expected).max() < 6.0  # a wrong angle / sign / order is off by ~100
    # 2. back onto the photo with the inverse: the photo reappears inside the crop's footprint
    back = np.stack([warp_to_photo(crop[..., c], m, (w, h)) for c in range(3)], -1)  # (h, w, 3)
    inside = warp_to_photo(np.ones((112, 112)), m, (w, h)) > 0.999  # (h, w) fully covered pixels
    assert inside.sum() > 0.9 * 112 * 112 / 0.55**2  # the footprint has the scaled crop's area
    assert np.abs(back[inside] - photo[inside]).mean() < 2.0
    assert back[~inside & (warp_to_photo(np.ones((112, 112)), m, (w, h)) == 0)].max() == 0.0  # black outside
    # 3. a single marked aligned pixel lands where M^-1 says
    hot = np.zeros((112, 112), np.float32)
    hot[30, 80] = 1.0
    py, px = np.unravel_index(np.argmax(warp_to_photo(hot, m, (w, h))), (h, w))
    assert np.hypot(*(np.array([px, py]) - transform_points(inv, np.array([[80.0, 30.0]]))[0])) <= 1.0


def test_no_face_fallbacks() -> None:
    img = np.full((250, 250, 3), 128, np.uint8)
    det = _FakeDetector([])
    face = align_image(img, detector=det)
    assert face.method == "center" and face.landmarks is None and face.score == 0.0
    assert np.allclose(face.affine, center_affine(250, 250))
    with pytest.raises(NoFaceError):
        align_image(img, detector=det, fallback=None)


def test_112_input_is_identity() -> None:
    img = np.random.default_rng(0).integers(0, 255, (112, 112, 3), dtype=np.uint8)
    face = align_image(img, detector=_FakeDetector([]))
    assert face.method == "identity" and np.array_equal(face.image, img)
    assert np.allclose(face.affine, np.eye(3)[:2])


def test_bad_array_is_refused() -> None:
    with pytest.raises(ValueError, match="HxWx3 uint8"):
        align_image(np.zeros((50, 50), np.uint8))


@pytest.mark.data
def test_center_fallback_on_lfw_is_close_to_mtcnn(lfw_root: Path) -> None:
    # The fixed affine was fitted to LFW's median landmarks: on a typical photo the eyes land
    # within a few pixels of the template even without a detector.
    img = load_image(lfw_root / "Aaron_Eckhart" / "Aaron_Eckhart_0001.jpg")
    face = align_image(img)
    eyes_center = transform_points(center_affine(250, 250), face.landmarks[:2])
    assert np.abs(eyes_center - ARCFACE_TEMPLATE[:2]).max() < 6.0


@pytest.mark.data
@pytest.mark.slow
def test_lfw_200_eyes_within_3px(lfw_root: Path) -> None:
    files = sorted(lfw_root.glob("*/*.jpg"))[::66][:200]
    assert len(files) == 200
    ok3, mid3, redetected_ok, redetected = 0, 0, 0, 0
    for i, f in enumerate(files):
        face = align_image(load_image(f), fallback=None)
        eyes = transform_points(face.affine, face.landmarks[:2])  # (2, 2) detected eyes, warped
        err = np.linalg.norm(eyes - ARCFACE_TEMPLATE[:2], axis=1)  # (2,) px per eye
        ok3 += err.max() <= 3.0
        mid3 += np.linalg.norm(eyes.mean(0) - ARCFACE_TEMPLATE[:2].mean(0)) <= 3.0
        if i % 4 == 0:  # independent check: detect again on the 112 x 112 crop
            from cqa_core.data.align import detect_faces

            boxes, _, pts = detect_faces(face.image)
            if len(boxes):
                redetected += 1
                j = int(np.argmax((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])))
                # MTCNN on a tight 112 crop reads landmarks ~3 px low (the chin is cut), so check
                # what a crop must get right regardless: the eye line is level and the eyes are
                # the template's distance apart.
                d = pts[j, 1] - pts[j, 0]  # (2,) left eye -> right eye
                level = abs(np.degrees(np.arctan2(d[1], d[0]))) <= 5.0
                scale = abs(np.linalg.norm(d) / np.linalg.norm(ARCFACE_TEMPLATE[1] - ARCFACE_TEMPLATE[0]) - 1) <= 0.15
                redetected_ok += bool(level and scale)
    # The criterion: both eye centres within 3 px of the template on >= 95 % of faces.
    # The eye-weighted fit gives 97.9 % over all 13,233 LFW photos (the unweighted one 83.6 %).
    assert ok3 >= 190, f"only {ok3}/200 faces have both eyes within 3 px"
    assert mid3 >= 190, f"only {mid3}/200 eye midpoints within 3 px"
    # measured 44/50 (88 %) on this sample with the 5 deg / 15 % bounds
    assert redetected >= 45 and redetected_ok >= 0.8 * redetected, (redetected, redetected_ok)


@pytest.mark.data
def test_align_folder_resumes_and_records(lfw_root: Path, tmp_path: Path) -> None:
    from cqa_core.data.align_run import align_folder

    src = tmp_path / "src"
    (src / "A").mkdir(parents=True)
    for f in sorted((lfw_root / "Aaron_Peirsol").glob("*.jpg"))[:3]:
        (src / "A" / f.name).write_bytes(f.read_bytes())
    (src / "A" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really")
    (src / "A" / "blank.png").write_bytes(_png(np.full((200, 200, 3), 90, np.uint8)))
    s = align_folder(src, tmp_path / "out", fallback=None, workers=1, progress=False)
    assert s["total"] == 5 and s["aligned_this_run"] == 3 and s["errors"] == 1 and s["no_face"] == 1
    rows = list(csv.DictReader(open(tmp_path / "out" / "alignment.csv")))
    assert [r["path"] for r in rows] == sorted(f"A/{f.name}" for f in (src / "A").glob("Aaron*"))
    r = rows[0]
    m = np.array([[float(r[k]) for k in ("a00", "a01", "a02")], [float(r[k]) for k in ("a10", "a11", "a12")]])
    lm = np.array([[float(r[f"lm{i}_x"]), float(r[f"lm{i}_y"])] for i in range(5)])
    assert np.abs(transform_points(m, lm) - ARCFACE_TEMPLATE).max() < 8.0
    misses = {m["path"]: m for m in csv.DictReader(open(tmp_path / "out" / "misses.csv"))}
    assert misses["A/broken.jpg"]["action"] == "error" and "CorruptImageError" in misses["A/broken.jpg"]["reason"]
    assert misses["A/blank.png"]["action"] == "skipped"
    again = align_folder(src, tmp_path / "out", fallback=None, workers=1, progress=False)
    assert again["done_before"] == 5 and again["aligned_this_run"] == 0


def _png(a: np.ndarray) -> bytes:
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(a).save(buf, format="PNG")
    return buf.getvalue()


def test_cli_align_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import json

    from PIL import Image

    from cqa_core.cli import main

    (tmp_path / "src" / "P").mkdir(parents=True)
    Image.fromarray(np.full((112, 112, 3), 60, np.uint8)).save(tmp_path / "src" / "P" / "a.png")
    (tmp_path / "src" / "P" / "b.jpg").write_text("not an image")
    assert main(["align", str(tmp_path / "src"), str(tmp_path / "out"), "--workers", "1", "--json"]) == 0
    s = json.loads(capsys.readouterr().out)
    assert s["methods"] == {"identity": 1} and s["errors"] == 1 and s["total"] == 2
    assert (tmp_path / "out" / "P" / "a.png").exists()
    again = tmp_path / "again"
    assert main(["align", str(tmp_path / "src"), str(again), "--workers", "1", "--json",
                 "--landmarks-from", str(tmp_path / "out" / "alignment.csv")]) == 0
    s = json.loads(capsys.readouterr().out)
    assert s["landmarks_reused"] == 1 and s["methods"] == {"identity": 1}  # the unreadable file has no row
    assert (again / "P" / "a.png").read_bytes() == (tmp_path / "out" / "P" / "a.png").read_bytes()
