"""Margin heads on a 2-class toy whose logits are computed by hand."""

import math

import pytest
import torch

from cqa_core.model.heads import ArcFace, CosFace, create_head


def toy(head):
    with torch.no_grad():
        head.weight.copy_(torch.eye(2))  # class centres along the axes
    return head


def test_cosface_logits_by_hand():
    head = toy(CosFace(2, 2, scale=64.0, margin=0.35))
    emb = torch.tensor([[1.0, 0.0], [3.0, 4.0]])  # cosines [1, 0] and [0.6, 0.8]
    logits = head(emb, torch.tensor([0, 1]))
    # target gets s * (cos - m): 64 * 0.65 = 41.6 and 64 * (0.8 - 0.35) = 28.8; others s * cos
    expected = torch.tensor([[41.6, 0.0], [38.4, 28.8]])
    assert torch.allclose(logits, expected, atol=1e-4)
    # without labels (inference) no margin
    assert torch.allclose(head(emb), torch.tensor([[64.0, 0.0], [38.4, 51.2]]), atol=1e-4)


def test_arcface_logits_by_hand():
    head = toy(ArcFace(2, 2, scale=64.0, margin=0.5))
    logits = head(torch.tensor([[3.0, 4.0]]), torch.tensor([1]))
    # theta = acos(0.8) = 0.6435; cos(0.6435 + 0.5) = 0.41350
    target = 64 * math.cos(math.acos(0.8) + 0.5)
    assert logits[0, 1].item() == pytest.approx(target, abs=1e-3)
    assert logits[0, 0].item() == pytest.approx(64 * 0.6, abs=1e-4)


def test_create_head_rejects_unknown():
    with pytest.raises(ValueError, match="cosface or arcface"):
        create_head("sphereface", 2, 2, 64, 0.35)
