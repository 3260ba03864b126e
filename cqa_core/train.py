"""Compatibility import: the trainer lives in :mod:`cqa_core.training.trainer`.

``from cqa_core.train import Trainer`` keeps working for notebooks and scripts written before the move.
"""

from cqa_core.training.net import seed_everything
from cqa_core.training.trainer import Trainer, TrainingDiverged

__all__ = ["Trainer", "TrainingDiverged", "seed_everything"]
