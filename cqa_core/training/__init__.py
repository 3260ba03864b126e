"""The trainer (``training.trainer.Trainer``) and its helpers: schedule, data order, checkpoints, DDP, callbacks."""
