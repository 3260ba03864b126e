"""Stems that produce the feature map X of CQA-Face.

``IResNet`` follows insightface's ``arcface_torch/backbones/iresnet.py`` layout: a 3x3 stem conv
without max-pool, IBasicBlock (BN-conv-BN-PReLU-conv-BN, stride on the second conv), four stages
of widths 64/128/256/512 each halving the resolution, so 112 x 112 input -> 512 x 7 x 7.
``stem_layers`` is everything up to that map (the "stem CNN" of the paper); ``IResNet`` adds
insightface's flatten -> FC-512 -> BN head so the bare network can be counted and benchmarked.

``light`` is this project's CPU stem: the same blocks, a 32-wide stride-2 first conv, then three
stages of widths 48/96/192 with 1/2/2 blocks: 192 x 7 x 7 at 112 x 112 input, 1.5M parameters,
0.46 GFLOPs. ``light_wide`` widens the last stage to 256 (256 x 7 x 7, 2.4M parameters, 0.55
GFLOPs): the capacity lever of issue 11, for a student that fits its teacher only loosely.
"""

from __future__ import annotations

import torch
from torch import nn

IRESNET_DEPTHS = {
    "r18": (2, 2, 2, 2),
    "r34": (3, 4, 6, 3),
    "r50": (3, 4, 14, 3),
    "r100": (3, 13, 30, 3),
}


def conv3x3(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)


class IBasicBlock(nn.Module):
    """insightface's improved residual block: BN-conv-BN-PReLU-conv-BN (+ shortcut)."""

    def __init__(self, cin: int, cout: int, stride: int = 1) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(cin, eps=1e-5)
        self.conv1 = conv3x3(cin, cout)
        self.bn2 = nn.BatchNorm2d(cout, eps=1e-5)
        self.prelu = nn.PReLU(cout)
        self.conv2 = conv3x3(cout, cout, stride)
        self.bn3 = nn.BatchNorm2d(cout, eps=1e-5)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(
                nn.Conv2d(cin, cout, 1, stride=stride, bias=False), nn.BatchNorm2d(cout, eps=1e-5)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)  # (B, cout, H/s, W/s)
        out = self.bn1(x)  # (B, cin, H, W)
        out = self.prelu(self.bn2(self.conv1(out)))  # (B, cout, H, W)
        out = self.bn3(self.conv2(out))  # (B, cout, H/s, W/s)
        return out + identity


def make_stage(cin: int, cout: int, depth: int, stride: int = 2) -> nn.Sequential:
    blocks = [IBasicBlock(cin, cout, stride)]
    blocks += [IBasicBlock(cout, cout) for _ in range(depth - 1)]
    return nn.Sequential(*blocks)


class StemCNN(nn.Module):
    """The stem CNN: image (B, 3, 112, 112) -> feature map X (B, C, 7, 7).

    Attributes:
        out_channels: C, the channel count of X.
    """

    def __init__(self, widths: tuple[int, ...], depths: tuple[int, ...], first_stride: int = 1) -> None:
        super().__init__()
        self.conv1 = conv3x3(3, widths[0], first_stride)
        self.bn1 = nn.BatchNorm2d(widths[0], eps=1e-5)
        self.prelu = nn.PReLU(widths[0])
        stages = []
        cin = widths[0]
        for cout, depth in zip(widths[1:], depths, strict=True):
            stages.append(make_stage(cin, cout, depth))
            cin = cout
        self.stages = nn.Sequential(*stages)
        self.bn2 = nn.BatchNorm2d(cin, eps=1e-5)  # insightface's bn2 after layer4
        self.out_channels = cin

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.prelu(self.bn1(self.conv1(x)))  # (B, w0, 112/s, 112/s)
        x = self.stages(x)  # (B, C, 7, 7)
        return self.bn2(x)  # (B, C, 7, 7)


def create_stem(name: str) -> StemCNN:
    """Build a stem by name: ``r18|r34|r50|r100|light|light_wide``."""
    if name in IRESNET_DEPTHS:
        return StemCNN((64, 64, 128, 256, 512), IRESNET_DEPTHS[name])
    if name == "light":
        return StemCNN((32, 48, 96, 192), (1, 2, 2), first_stride=2)
    if name == "light_wide":
        return StemCNN((32, 48, 96, 256), (1, 2, 2), first_stride=2)
    raise ValueError(f"unknown stem {name!r}; choose one of r18, r34, r50, r100, light, light_wide")


class IResNet(nn.Module):
    """The bare iResNet face model of insightface: stem -> dropout -> flatten -> FC-512 -> BN.

    Used as the baseline in parameter counts and throughput benchmarks; CQA-Face replaces
    the flatten/FC head with its branches.
    """

    def __init__(self, name: str = "r100", embedding_size: int = 512, spatial: int = 7) -> None:
        super().__init__()
        self.stem = create_stem(name)
        c = self.stem.out_channels
        self.fc = nn.Linear(c * spatial * spatial, embedding_size)
        self.features = nn.BatchNorm1d(embedding_size, eps=1e-5)
        nn.init.constant_(self.features.weight, 1.0)
        self.features.weight.requires_grad = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x).flatten(1)  # (B, C*7*7)
        return self.features(self.fc(x))  # (B, 512)
