"""What a run reads of each face: its embedding and its quality, for any recognizer.

:func:`face_readings` is the one place that knows a recognizer may have branches (CQA-Face): it
then returns the QAN readings (:func:`cqa_core.evaluation.face_scores.score_faces`: overall QAN
quality, branch qualities S_hat_i, CAL penalty); any other recognizer gets its embedding and the
embedding's L2 norm. :func:`quality_of` names which of the two a run's ``quality`` column holds.
"""

from __future__ import annotations

import numpy as np
from tqdm import tqdm

from cqa_core.evaluation.face_scores import score_faces
from cqa_core.recognizers.base import Recognizer
from cqa_core.recognizers.chips import recognizer_chips

QUALITY_KINDS = {
    "qan": "overall QAN quality: attention-mass-weighted mean of the branch qualities S_hat_i",
    "norm": "L2 norm of the embedding before normalisation (MagFace-style)",
}
"""What a run's ``quality`` column can hold, by its ``quality_kind``."""


def face_readings(rec: Recognizer, images: np.ndarray, sources: list | None, flip: bool = False,
                  batch_size: int = 64, device: str = "cpu", progress: bool = True) -> dict[str, np.ndarray]:
    """Per-face readings of aligned faces, as a dict of arrays that all lead with the face axis.

    Args:
        rec: any recognizer.
        images: (N, 112, 112, 3) uint8 aligned crops.
        sources: per crop, its (photo, alignment row) (``PairSet.sources``) when a recognizer with
            another chip should cut it from the photo; None cuts it from the crop.
        flip: embeddings are flip-sums (insightface test-time flip).
        batch_size: faces per forward pass.
        device: where a CQA-Face runs.
        progress: show a tqdm bar.

    Returns:
        ``embedding`` (N, D) float32 and ``norm`` (N,) always; with branches also ``overall`` (N,)
        (the overall QAN quality), ``branch_quality`` (N, b) and ``cal`` (N,). ``norm`` is the
        norm of the face's own embedding for CQA-Face and of the embedding as scored otherwise.
    """
    if rec.readout is not None:
        s = score_faces(rec.readout.model, images, batch_size=batch_size, flip=flip, device=device, progress=progress)
        return {"embedding": s.embedding.astype(np.float32), "norm": s.norm.astype(np.float32),
                "overall": s.overall.astype(np.float32), "branch_quality": s.quality.astype(np.float32),
                "cal": s.cal.astype(np.float32)}
    chips = recognizer_chips(rec, images, sources, progress)  # (N, S, S, 3)
    out = []
    for start in tqdm(range(0, len(chips), batch_size), desc=f"embed ({rec.name})", unit="batch",
                      disable=not progress):
        part = chips[start:start + batch_size]  # (b, S, S, 3)
        e = rec.embed(part)  # (b, D)
        out.append(e + rec.embed(part[:, :, ::-1].copy()) if flip else e)
    emb = np.concatenate(out).astype(np.float32) if out else np.zeros((0, 0), np.float32)  # (N, D)
    return {"embedding": emb, "norm": np.linalg.norm(emb, axis=1).astype(np.float32)}


def quality_of(readings: dict[str, np.ndarray]) -> tuple[np.ndarray, str]:
    """(quality (N,), its kind): the overall QAN quality where there is one, else the embedding norm."""
    if "overall" in readings:
        return readings["overall"], "qan"
    return readings["norm"], "norm"
