"""LANet spatial attention (Wang & Guo 2019), one per local branch (Fig. 2b, Eq. 1).

M_i = Sigmoid(conv1x1(ReLU(conv1x1(X))))   (B, 1, h, w), values in [0, 1]
O_i = X * M_i                               (Eq. 1, Hadamard product broadcast over channels)
P_i = GAP(O_i)                              (B, C)
"""

from __future__ import annotations

import torch
from torch import nn


class LANet(nn.Module):
    """One branch's attention: two 1x1 convs, ReLU then Sigmoid, channel reduction r."""

    def __init__(self, channels: int, reduction: int = 16) -> None:
        super().__init__()
        hidden = max(1, channels // reduction)
        self.conv1 = nn.Conv2d(channels, hidden, 1)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(hidden, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """X (B, C, h, w) -> attention map M (B, h, w) in [0, 1]."""
        m = self.conv2(self.relu(self.conv1(x)))  # (B, 1, h, w)
        return torch.sigmoid(m)[:, 0]  # (B, h, w)


class BranchAttention(nn.Module):
    """b LANets over the same X: attention maps and GAP-pooled local features P_i."""

    def __init__(self, channels: int, branches: int, reduction: int = 16) -> None:
        super().__init__()
        self.lanets = nn.ModuleList(LANet(channels, reduction) for _ in range(branches))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """X (B, C, h, w) -> (maps (B, b, h, w), local features (B, b, C))."""
        maps = torch.stack([lanet(x) for lanet in self.lanets], dim=1)  # (B, b, h, w)
        # P_i = GAP(X * M_i) = mean_{h,w} X[c,h,w] M_i[h,w], one einsum for all branches
        local = torch.einsum("bchw,bkhw->bkc", x, maps) / (x.shape[2] * x.shape[3])  # (B, b, C)
        return maps, local
