"""Trainer callbacks: the hooks notebooks use, plus the JSONL and TensorBoard loggers.

A callback subclasses :class:`Callback` and overrides any of ``on_train_start``, ``on_step``
(every ``log_every`` steps, with the logged metrics), ``on_epoch``, ``on_eval`` and
``on_train_end``. To stop a run from a widget call ``trainer.request_stop()``: the run ends
after the current step with a checkpoint. Callbacks run on rank 0 only.

A notebook live plot and stop button, e.g. with plotly + ipywidgets::

    class LivePlot(Callback):
        def __init__(self, fig):             # go.FigureWidget with one scatter trace
            self.fig = fig
        def on_step(self, trainer, m):
            with self.fig.batch_update():
                self.fig.data[0].x += (m["step"],)
                self.fig.data[0].y += (m["loss"],)

    trainer = Trainer(config, callbacks=[LivePlot(fig)])
    stop.on_click(lambda _: trainer.request_stop())   # widgets.Button
    trainer.fit()   # run it in a thread to keep the kernel responsive to the button
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from cqa_core.training.trainer import Trainer

log = logging.getLogger(__name__)


class Callback:
    """Base class: every hook is a no-op."""

    def on_train_start(self, trainer: Trainer) -> None: ...

    def on_step(self, trainer: Trainer, metrics: dict[str, Any]) -> None: ...

    def on_epoch(self, trainer: Trainer, metrics: dict[str, Any]) -> None: ...

    def on_eval(self, trainer: Trainer, metrics: dict[str, Any]) -> None: ...

    def on_train_end(self, trainer: Trainer) -> None: ...


class JSONLLogger(Callback):
    """Appends one JSON object per logged step / epoch / eval to ``out_dir/metrics.jsonl``."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def _write(self, kind: str, metrics: dict[str, Any]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a") as f:
            f.write(json.dumps({"kind": kind, **metrics}) + "\n")

    def on_step(self, trainer: Trainer, metrics: dict[str, Any]) -> None:
        self._write("step", metrics)

    def on_epoch(self, trainer: Trainer, metrics: dict[str, Any]) -> None:
        self._write("epoch", metrics)

    def on_eval(self, trainer: Trainer, metrics: dict[str, Any]) -> None:
        self._write("eval", metrics)


class TensorBoardLogger(Callback):
    """Scalars to ``out_dir/tb``; does nothing (one warning) if tensorboard is not installed."""

    def __init__(self, log_dir: Path) -> None:
        self.writer = None
        try:
            from torch.utils.tensorboard import (
                SummaryWriter,  # optional: the train extra (tensorboard)
            )
        except ImportError:
            log.warning("tensorboard not installed: no TensorBoard events (metrics.jsonl still written)")
            return
        self.writer = SummaryWriter(str(log_dir))

    def _scalars(self, prefix: str, metrics: dict[str, Any]) -> None:
        if self.writer is None:
            return
        for key, value in metrics.items():
            if key != "step" and isinstance(value, (int, float)) and not isinstance(value, bool):
                self.writer.add_scalar(f"{prefix}/{key}", value, metrics["step"])

    def on_step(self, trainer: Trainer, metrics: dict[str, Any]) -> None:
        self._scalars("train", metrics)

    def on_eval(self, trainer: Trainer, metrics: dict[str, Any]) -> None:
        self._scalars("eval", metrics)

    def on_train_end(self, trainer: Trainer) -> None:
        if self.writer is not None:
            self.writer.close()
