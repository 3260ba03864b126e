"""Start a benchmark run from the Benchmark tab: the analysis service runs ``cqa eval --out``, a bar shows how far.

The service runs it in a child process (``workbench.service.runjobs``), so other viewers' clicks
are answered meanwhile; this kernel asks how far it is once a second (:data:`POLL_S`) from a
background thread and fills the progress bar. When the run is written, ``on_done(folder)`` lists
and shows it. Without an analysis service (a notebook's in-process session) the box says to call
``record_run`` or ``cqa eval --out`` instead.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import ipywidgets as W

from workbench.views.common import Messages
from workbench.views.markup import escape

POLL_S = 1.0
DATA = ("lfw", "celeba299")
PROTOCOLS = ("verify", "masked-m2n", "masked-m2m", "cross-quality")


class RunStarter:
    """Name, model, data, protocol and pairs of a new run; a start button and its progress bar."""

    def __init__(self, session: Any, messages: Messages, on_done: Callable[[str], None]) -> None:
        """``session``: the viewer's ``workbench.session.Session`` (its backend starts and reports runs)."""
        self.session, self.messages, self.on_done = session, messages, on_done
        self.job: dict[str, Any] | None = None
        self.name = W.Text(placeholder="run name, e.g. cqa-lfw-m2n", layout=W.Layout(width="220px"))
        self.name.add_class("cqa-run-name")
        self.model = W.Dropdown(options=self._models(), layout=W.Layout(width="200px"), description="model")
        self.data = W.Dropdown(options=DATA, value="lfw", layout=W.Layout(width="170px"), description="data")
        self.protocol = W.Dropdown(options=PROTOCOLS, value="verify", layout=W.Layout(width="220px"),
                                   description="protocol")
        self.limit = W.BoundedIntText(value=600, min=1, max=1_000_000, description="pairs", layout=W.Layout(width="170px"))
        self.start_button = W.Button(description="start a run", button_style="primary")
        self.start_button.add_class("cqa-run-start")
        self.bar = W.IntProgress(value=0, min=0, max=100, layout=W.Layout(width="300px", visibility="hidden"))
        self.bar.add_class("cqa-run-progress")
        self.state = W.HTML("")
        self.state.add_class("cqa-run-state")
        self.start_button.on_click(messages.guard(lambda _: self.start()))
        self.available = callable(getattr(session.backend, "start_run", None))
        if not self.available:
            self.start_button.disabled = True
            self.state.value = ("starting a run needs the analysis service (<code>cqa workbench</code>); here, call "
                                "<code>record_run</code> or <code>cqa eval --out</code>")
        self.widget = W.VBox([W.HTML("<h4>start a run</h4>"),
                              W.HBox([self.name, self.model, self.data, self.protocol, self.limit]),
                              W.HBox([self.start_button, self.bar, self.state])])
        self.widget.add_class("cqa-run-starter")

    def _models(self) -> list[tuple[str, str]]:
        return [(info["name"], spec) for spec, info in self.session.models.items()]

    def request(self) -> dict[str, Any]:
        """The service request of the form's values (the served model as None)."""
        spec = self.model.value
        return {"name": self.name.value.strip(), "data": self.data.value, "protocol": self.protocol.value,
                "limit": int(self.limit.value), "spec": None if spec == "default" else spec}

    def start(self) -> None:
        """Ask the service to start the run, then follow it in the background."""
        self.model.options = self._models()  # a model added since
        self.job = self.session.backend.start_run(self.request())
        self.start_button.disabled = True
        self.bar.layout.visibility = "visible"
        self._show(self.job)
        threading.Thread(target=self.messages.guard(self.follow), daemon=True).start()

    def follow(self) -> None:
        """Poll the job until it ends; then hand its folder to ``on_done`` (or show why it failed)."""
        try:
            while self.job["state"] == "running":
                time.sleep(POLL_S)
                self.job = self.session.backend.run_status(self.job["id"])
                self._show(self.job)
        finally:
            self.start_button.disabled = False
        if self.job["state"] == "done":
            self.on_done(self.job["folder"])
        else:
            raise ValueError(f"the run {self.job['name']} failed: {self.job['message']}")

    def _show(self, job: dict[str, Any]) -> None:
        self.bar.value = int(job["percent"])
        step = f" {job['done']}/{job['total']}" if job["total"] else ""
        self.state.value = (f"<span class='cqa-run-{escape(job['state'])}'>{escape(job['name'])}: "
                            f"{escape(job['state'])}, {escape(job['stage'])}{step} ({job['percent']}%)</span>")
