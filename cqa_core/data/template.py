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
