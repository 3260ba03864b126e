"""Hand-built CQA-Face variants whose explanations can be worked out on paper (for tests and docs).

* :func:`plant_attention` makes every branch's attention map M_i equal a chosen (h, w) map,
  whatever the input: the stem returns a fixed X whose channel i holds logit(M_i) + K, and
  LANet i's first conv copies channel i into one hidden unit (ReLU passes it: it is > 0), its
  second conv subtracts K, so M_i = sigmoid(logit(M_i)) exactly.
* :class:`WindowStem` only sees the pixels inside a window: X = window * ReLU(W avgpool16(x)).
  Outside the window X = 0, so nothing outside can change the embedding, and Grad-CAM (a
  weighted sum of X) is 0 there. A faithful map must rank the window first.
* :func:`calibrate` gives a random model realistic BatchNorm running statistics.
"""

from __future__ import annotations

import torch
from torch import nn

K = 20.0  # shift that keeps planted logits positive through LANet's ReLU


class PlantedStem(nn.Module):
    """A stem that ignores the image and returns a fixed X (C, h, w) for every face."""

    def __init__(self, x: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("x", x)  # (C, h, w)
        self.out_channels = x.shape[0]

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.x.expand(images.shape[0], -1, -1, -1)  # (B, C, h, w)


def plant_attention(model: nn.Module, maps: torch.Tensor) -> nn.Module:
    """Make ``model``'s attention maps equal ``maps`` (b, h, w), values strictly inside (0, 1)."""
    b, h, w = maps.shape
    c = model.stem.out_channels
    logits = torch.logit(maps.double()).float()  # (b, h, w)
    if (logits.abs() >= K).any():
        raise ValueError("planted maps must stay inside (sigmoid(-20), sigmoid(20))")
    x = torch.zeros(c, h, w)  # (C, h, w)
    x[:b] = logits + K  # channel i carries branch i's logit, shifted positive
    model.stem = PlantedStem(x)
    with torch.no_grad():
        for i, lanet in enumerate(model.branches.lanets):
            lanet.conv1.weight.zero_()
            lanet.conv1.bias.zero_()
            lanet.conv1.weight[0, i] = 1.0  # hidden unit 0 = X_i = logit_i + K > 0
            lanet.conv2.weight.zero_()
            lanet.conv2.weight[0, 0] = 1.0
            lanet.conv2.bias.fill_(-K)  # -> logit_i
    return model


class WindowStem(nn.Module):
    """X = window * ReLU(W avgpool16(x)): (B, 3, 112, 112) -> (B, C, 7, 7), zero outside the window."""

    def __init__(self, channels: int, window: torch.Tensor, seed: int = 0) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.proj = nn.Conv2d(3, channels, 1)
        with torch.no_grad():
            self.proj.weight.copy_(torch.randn(channels, 3, 1, 1, generator=g))
            self.proj.bias.copy_(torch.rand(channels, generator=g))
        self.register_buffer("window", window.float())  # (7, 7) of 0 / 1
        self.out_channels = channels

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        pooled = nn.functional.avg_pool2d(images, 16)  # (B, 3, 7, 7)
        return torch.relu(self.proj(pooled)) * self.window  # (B, C, 7, 7)


@torch.no_grad()
def calibrate(model: nn.Module, batches: int = 2, batch_size: int = 6, seed: int = 0) -> nn.Module:
    """Fill BatchNorm running statistics from random faces, randomise the last BN, return eval model."""
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.reset_running_stats()
            m.momentum = None  # cumulative average
    model.train()
    for _ in range(batches):
        model(torch.rand(batch_size, 3, 112, 112, generator=g) * 2 - 1)
    bn = model.features
    bn.weight.copy_(torch.rand(bn.num_features, generator=g) + 0.5)
    bn.bias.copy_(torch.randn(bn.num_features, generator=g) * 0.1)
    return model.eval()
