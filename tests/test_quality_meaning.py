"""QAN quality means something on the bundled default model (issue 11).

Real LFW faces (first photo of 60 people from the 100th on, MTCNN-aligned here): a masked
and a heavily blurred (sigma 5) version must get a lower overall quality than the clean face on
>= 80% of faces, and the branch that looks most at the mask must lose more quality than the
branch that looks least at it on >= 70% of faces (the probe of benchmarks/qan_occlusion.py).
"""

from __future__ import annotations

import numpy as np
import pytest

from cqa_core.checkpoint import load_default
from cqa_core.data.align import align_image, load_image
from cqa_core.data.degrade import MASK_KINDS, apply_mask, blur
from cqa_core.explain.quality import occlusion_probe, overall_quality, quality_report

pytestmark = pytest.mark.data


@pytest.fixture(scope="module")
def faces(lfw_root) -> np.ndarray:
    people = sorted(p for p in lfw_root.iterdir() if p.is_dir())[100:160]
    return np.stack([align_image(load_image(sorted(p.glob("*.jpg"))[0])).image for p in people])  # (60, 112, 112, 3)


@pytest.fixture(scope="module")
def model():
    return load_default()


def overall(model, images: np.ndarray) -> np.ndarray:
    rep = quality_report(model, images)
    return overall_quality(rep.quality, rep.maps112)  # (N,)


def test_masked_and_blurred_faces_score_lower_than_clean(model, faces) -> None:
    clean = overall(model, faces)
    masked = overall(model, np.stack([apply_mask(f, MASK_KINDS[i % len(MASK_KINDS)], seed=i)[0]
                                      for i, f in enumerate(faces)]))
    blurred = overall(model, np.stack([blur(f, 5.0) for f in faces]))
    assert (masked < clean).mean() >= 0.8, f"masked below clean on {(masked < clean).mean():.0%} of faces"
    assert (blurred < clean).mean() >= 0.8, f"blurred below clean on {(blurred < clean).mean():.0%} of faces"


def test_the_branch_that_looks_at_the_mask_loses_quality(model, faces) -> None:
    masked, alpha = zip(*(apply_mask(f, MASK_KINDS[i % len(MASK_KINDS)], seed=i) for i, f in enumerate(faces)),
                        strict=True)
    probe = occlusion_probe(model, faces, np.stack(masked), np.stack(alpha))
    assert probe.most_loses_more >= 0.7 and probe.overall_falls >= 0.8, probe[:4]
    assert probe.median_most_change < 0  # masking lowers the most-covered branch's quality
