"""The ArcFace 5-point template on a 112 x 112 aligned face and the face regions built on it.

Points (x, y) in pixels: left eye, right eye, nose tip, left mouth corner, right mouth corner
("left" = the image's left). insightface's ``arcface_dst``.
"""

from __future__ import annotations

import numpy as np

SIZE = 112
ARCFACE_TEMPLATE = np.array(
    [
        [38.2946, 51.6963],
        [73.5318, 51.5014],
        [56.0252, 71.7366],
        [41.5493, 92.3655],
        [70.7299, 92.2041],
    ],
    dtype=np.float32,
)  # (5, 2)

DLIB_TEMPLATE = np.array(
    [[0.3210, 0.3060], [0.6853, 0.3053], [0.5027, 0.5222], [0.3407, 0.7065], [0.6618, 0.7058]],
    dtype=np.float64,
)  # (5, 2) left eye, right eye, nose tip, left / right mouth corner, as fractions of dlib's 150 px chip side.
# Measured by benchmarks/dlib_template.py on 2026-12-04 (200 LFW photos of pairsDevTrain.txt): the
# mean of MTCNN's landmarks mapped into dlib's own chip (HOG detector + 5-point shape predictor +
# get_face_chip_details(size=150, padding=0.25)); see that script for the residual.
