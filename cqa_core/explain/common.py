"""What every explainer shares and needs no torch: the error an explanation raises.

Torch-free on purpose: ``render`` and ``result`` (what a dashboard kernel without torch imports)
raise it too. The tensor helpers live in :mod:`cqa_core.explain.tensors`.
"""

from __future__ import annotations


class ExplainError(ValueError):
    """An input the explanation engine cannot use (the message says why, in plain words)."""
