"""Helpers of the trainer (``cqa_core.train``): schedule, data order, checkpoints, DDP, callbacks."""
