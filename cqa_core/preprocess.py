"""The one input convention every part of the project shares.

Images enter the model as RGB, 112 x 112, float32 in [-1, 1]: ``(pixel / 255 - 0.5) / 0.5``,
the insightface convention. Datasets hand out uint8 tensors (cheap to move to a GPU); this
module turns them into model input on whatever device they are on.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch

if TYPE_CHECKING:  # numpy is imported lazily: the bare GPU image runs training without it
    import numpy as np

INPUT_SIZE = 112
MEAN = 0.5
STD = 0.5


def normalize(x: torch.Tensor) -> torch.Tensor:
    """uint8 (B, 3, H, W) RGB or float in [0, 255] -> float (B, 3, H, W) in [-1, 1]."""
    return (x.float() / 255.0 - MEAN) / STD  # (B, 3, H, W)


def denormalize(x: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`normalize`: model input -> float pixels in [0, 255]."""
    return (x * STD + MEAN) * 255.0  # (B, 3, H, W)


def to_tensor(image: np.ndarray) -> torch.Tensor:
    """HWC uint8 RGB numpy image -> normalised (1, 3, H, W) float tensor."""
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"expected an HxWx3 uint8 RGB image, got shape {image.shape} dtype {image.dtype}")
    t = torch.from_numpy(np.array(image, copy=True)).permute(2, 0, 1)[None]  # (1, 3, H, W)
    return normalize(t)
