"""Quality-Aware Network (Eq. 4-7): a relation graph over the b local features.

Nodes are the branch features P_i (B, b, C). "1x1 convolutions" over a set of node vectors
are ``Conv1d(kernel_size=1)`` with the nodes on the length axis, so every node shares weights.

    phi     = ReLU(BN(W^phi  P))              (B, d, b)      d = C // qan_reduction
    varphi  = ReLU(BN(W^vphi P))              (B, d, b)
    A       = phi^T varphi                    (B, b, b)      A[i, j] = e(P_i, P_j)   (Eq. 4)
    A_i     = [A(i, :), A(:, i)]              (B, 2b, b)     relation vector of node i
    S_i     = theta([mu(P_i), nu(A_i)])       (B, b)                                 (Eq. 5)
    S_hat_i = sigmoid(S_i)                    (B, b)                                 (Eq. 6)
    P_hat_i = S_hat_i * P_i                   (B, b, C)                              (Eq. 7)

mu, nu: 1x1 conv + BN + ReLU; theta: two 1x1 convs with a ReLU between (Eq. 5 text).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn


def conv_bn_relu(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv1d(cin, cout, 1, bias=False), nn.BatchNorm1d(cout), nn.ReLU(inplace=True))


def relation_vectors(adj: torch.Tensor) -> torch.Tensor:
    """Adjacency (B, b, b) -> relation vectors (B, 2b, b); column i is [A(i, :), A(:, i)].

    The fixed order (row i first, then column i) is what lets the vector carry which
    branch is related to which (the paper's "spatial information").
    """
    rows = adj.transpose(1, 2)  # (B, b, b): [:, j, i] = A[i, j], column i holds row A(i, :)
    cols = adj  # (B, b, b): [:, j, i] = A[j, i], column i holds column A(:, i)
    return torch.cat([rows, cols], dim=1)  # (B, 2b, b)


class QANOutput(NamedTuple):
    weighted: torch.Tensor  # (B, b, C) P_hat
    quality: torch.Tensor  # (B, b) S_hat in (0, 1)
    relation: torch.Tensor  # (B, b, b) A


class QAN(nn.Module):
    """Quality scores for b local features from their features and their relations."""

    def __init__(self, channels: int, branches: int, reduction: int = 8, hidden: int = 128) -> None:
        super().__init__()
        d = max(1, channels // reduction)
        self.phi = conv_bn_relu(channels, d)  # W^phi
        self.varphi = conv_bn_relu(channels, d)  # W^varphi
        self.mu = conv_bn_relu(channels, hidden)
        self.nu = conv_bn_relu(2 * branches, hidden)
        self.theta = nn.Sequential(
            nn.Conv1d(2 * hidden, hidden, 1), nn.ReLU(inplace=True), nn.Conv1d(hidden, 1, 1)
        )

    def forward(self, local: torch.Tensor) -> QANOutput:
        """Local features P (B, b, C) -> QANOutput."""
        p = local.transpose(1, 2)  # (B, C, b) nodes on the length axis
        adj = torch.bmm(self.phi(p).transpose(1, 2), self.varphi(p))  # (B, b, b) Eq. 4
        rel = relation_vectors(adj)  # (B, 2b, b)
        joint = torch.cat([self.mu(p), self.nu(rel)], dim=1)  # (B, 2*hidden, b)
        scores = self.theta(joint)[:, 0]  # (B, b) S, Eq. 5
        quality = torch.sigmoid(scores)  # (B, b) S_hat, Eq. 6
        weighted = local * quality.unsqueeze(-1)  # (B, b, C) P_hat, Eq. 7
        return QANOutput(weighted, quality, adj)
