"""TrainingMonitor: live loss / CAL / accuracy curves and per-epoch CAM snapshots from a Trainer.

It is a ``cqa_core.training.callbacks.Callback`` (duck-typed: ``on_train_start``, ``on_step``,
``on_epoch``, ``on_eval``, ``on_train_end``, each ``(trainer, metrics)``), so
``Trainer(config, callbacks=[monitor])`` drives it. Metrics read: ``step``, ``loss``, ``div``
(the CAL term), ``train_acc``; eval ``accuracy``. The stop button calls ``trainer.request_stop()``;
a cell running ``fit()`` blocks the kernel, so use :meth:`TrainingMonitor.fit` with
``background=True`` when you want the button to act mid-run.
"""

from __future__ import annotations

import threading
from typing import Any

import ipywidgets as W
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from cqa_core.explain.analysis import analyse
from workbench.views.common import Messages, caption, image_widget, png
from workbench.views.figures import figure_widget

CURVES = (("loss", "loss"), ("div", "CAL"), ("train_acc", "train acc"), ("accuracy", "eval acc"))


class TrainingMonitor:
    """Live curves + CAM snapshots; pass it in ``callbacks=[...]`` or call :meth:`fit`."""

    def __init__(self, probe: Any = None, messages: Messages | None = None, snapshots: int = 6, size: int = 72) -> None:
        self.messages = messages or Messages()
        self.probe, self.size, self.keep = probe, size, snapshots
        self.trainer: Any = None
        self.thread: threading.Thread | None = None
        fig = make_subplots(rows=1, cols=3, subplot_titles=("loss", "CAL (div)", "accuracy"))
        for key, name in CURVES:
            col = {"loss": 1, "div": 2}.get(key, 3)
            fig.add_trace(go.Scatter(x=[], y=[], mode="lines+markers", name=name), row=1, col=col)
        fig.update_layout(height=280, margin=dict(l=30, r=10, t=40, b=30))
        self.figure = figure_widget(fig)
        self.status = caption("waiting for the trainer", "cqa-train-status")
        self.stop = W.Button(description="stop", button_style="danger", icon="stop")
        self.stop.add_class("cqa-train-stop")
        self.stop.on_click(self.messages.guard(lambda _: self.request_stop()))
        self.snapshots = W.VBox([])
        self.snapshots.add_class("cqa-train-snapshots")
        self.widget = W.VBox([W.HBox([self.stop, self.status]), self.figure, self.snapshots, self.messages.widget])
        self.widget.add_class("cqa-train-tab")

    # ---- trainer callbacks -----------------------------------------------------------------
    def on_train_start(self, trainer: Any) -> None:
        self.trainer = trainer
        self.status.value = "training..."

    def on_step(self, trainer: Any, metrics: dict[str, Any]) -> None:
        self._append(metrics, ("loss", "div", "train_acc"))
        self.status.value = (f"step {metrics.get('step')}: loss {metrics.get('loss', float('nan')):.3f}, "
                             f"CAL {metrics.get('div', float('nan')):.3f}")

    def on_eval(self, trainer: Any, metrics: dict[str, Any]) -> None:
        self._append(metrics, ("accuracy",))

    def on_epoch(self, trainer: Any, metrics: dict[str, Any]) -> None:
        self.snapshot(trainer, metrics)

    def on_train_end(self, trainer: Any) -> None:
        self.status.value = f"done at step {getattr(trainer, 'step', '?')}"

    # ---- actions ---------------------------------------------------------------------------
    def request_stop(self) -> None:
        """Ask the trainer to stop after the current step."""
        if self.trainer is None:
            raise RuntimeError("no training run to stop")
        self.trainer.request_stop()
        self.status.value = "stop requested; finishing the current step"

    def fit(self, trainer: Any, background: bool = False) -> Any:
        """Run ``trainer.fit()`` (in a thread when ``background``) with this monitor attached."""
        if self not in trainer.callbacks:
            trainer.callbacks.append(self)
        self.trainer = trainer
        if not background:
            return trainer.fit()
        self.thread = threading.Thread(target=self.messages.guard(trainer.fit), daemon=True)
        self.thread.start()
        return self.thread

    def snapshot(self, trainer: Any, metrics: dict[str, Any]) -> None:
        """A row of the probe face's branch CAMs after this epoch (kept: the last ``snapshots``)."""
        if self.probe is None or getattr(trainer, "model", None) is None:
            return

        fa = analyse(trainer.model, self.probe)
        ims = []
        for ov in fa.overlays(on_photo=False, alpha=0.5):
            im = image_widget(self.size, "cqa-train-cam")
            im.value = png(ov.image, self.size)
            ims.append(W.VBox([caption(f"b{ov.branch} q={ov.quality:.2f}", "cqa-train-cam-title"), im]))
        row = W.HBox([caption(f"epoch {metrics.get('epoch')}", "cqa-train-epoch"), *ims])
        self.snapshots.children = (*self.snapshots.children, row)[-self.keep:]

    def _append(self, metrics: dict[str, Any], keys: tuple[str, ...]) -> None:
        step = metrics.get("step")
        with self.figure.batch_update():
            for trace, (key, _) in zip(self.figure.data, CURVES, strict=True):
                if key in keys and key in metrics:
                    trace.x = (*(trace.x or ()), step)
                    trace.y = (*(trace.y or ()), float(metrics[key]))
