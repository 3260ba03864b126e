"""Serve the dashboard: the analysis service (one model process) + Voila (thin viewer kernels).

``cqa workbench`` starts ``workbench.service`` on a free port, waits until it answers, restarts it
whenever it exits, and runs Voila with ``CQA_ANALYSIS_URL`` pointing at it, so each viewer's
kernel holds only widgets. Settings go to the kernels as env vars.

The notebook and its Voila settings are package data in ``workbench/dashboard/`` (``dashboard.ipynb``,
``voila.json``), so an installed wheel serves from any folder; ``notebooks/dashboard.ipynb`` is a
symlink to the same file for JupyterLab. ``cqa workbench`` calls :func:`serve`; tests call
:func:`voila_command` + :func:`kernel_env` to start the same server as a subprocess on a free port.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

DEFAULT_PORT = 8866
DASHBOARD_DIR = Path(__file__).resolve().parent / "dashboard"
NOTEBOOK = DASHBOARD_DIR / "dashboard.ipynb"
VOILA_CONFIG = DASHBOARD_DIR / "voila.json"


def free_port() -> int:
    """An unused TCP port on localhost."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def kernel_env(faces: str | None = None, checkpoint: str | None = None, debug: bool = False,
               base: dict[str, str] | None = None) -> dict[str, str]:
    """The environment Voila (and so the dashboard kernel) runs with."""
    env = dict(os.environ if base is None else base)
    if faces:
        env["CQA_FACES"] = str(Path(faces).expanduser().resolve())
    if checkpoint:
        env["CQA_CHECKPOINT"] = str(Path(checkpoint).expanduser().resolve())
    if debug:
        env["CQA_DEBUG"] = "1"
    # our Voila template (workbench/dashboard/voila/templates/cqa: lab + a plain loading note)
    env["JUPYTER_PATH"] = os.pathsep.join(p for p in (str(DASHBOARD_DIR), env.get("JUPYTER_PATH", "")) if p)
    env.setdefault("CQA_TORCH_THREADS", "1")
    env.setdefault("OMP_NUM_THREADS", "1")
    return env


def voila_command(port: int = DEFAULT_PORT, debug: bool = False, preheat: bool = False,
                  pool: int | None = None) -> list[str]:
    """Voila on the dashboard notebook: our ``cqa`` template (lab + a plain loading note), sources stripped,
    no tracebacks, no browser.

    Voila reads ``voila.json`` from ``DASHBOARD_DIR`` only (not the caller's folder), so the
    command works from any working directory.

    ``preheat`` keeps ``default_pool_size`` kernels (10, voila.json) that have already run the
    dashboard waiting for the next visitors (Voila's ``preheat_kernel``), refilled 60 s after use
    (``VoilaKernelManager.fill_delay``: a shorter delay makes the refill compete with the pages
    still loading; docs/benchmarks.md). With the analysis service a viewer kernel holds only
    widgets (~130 MB RSS, no torch), so ten idle ones cost ~1.3 GB and a lab of ten that arrives
    at once gets warm kernels.
    ``voila.json`` also culls kernels idle for 15 minutes with no page connected. ``pool``
    overrides the pool size (``cqa workbench --pool N``: a class of 30 wants more, a laptop fewer).
    """
    if not NOTEBOOK.is_file() or not VOILA_CONFIG.is_file():
        raise FileNotFoundError(f"the dashboard is missing from this install: {NOTEBOOK} / {VOILA_CONFIG.name}")
    return [
        sys.executable, "-m", "voila", str(NOTEBOOK), f"--Voila.config_file_paths={DASHBOARD_DIR}",
        f"--port={port}", "--no-browser", "--template=cqa", "--strip_sources=True",
        f"--show_tracebacks={debug}", "--Voila.ip=127.0.0.1", f"--preheat_kernel={preheat}",
        *([f"--VoilaConfiguration.default_pool_size={pool}"] if pool is not None else []),
    ]


def gallery_source(faces: str | None) -> str:
    """Where the gallery will come from, in words."""
    from cqa_core.data import shared_data_dir

    if faces:
        return f"faces from {faces}"
    lfw = shared_data_dir() / "lfw-deepfunneled"
    return f"the first 60 people of {lfw}" if lfw.is_dir() else "no gallery (upload box only)"


def service_command(port: int, checkpoint: str | None = None, faces: str | None = None) -> list[str]:
    """The analysis service (``workbench.service``) on ``port``: one model process for all viewers."""
    cmd = [sys.executable, "-m", "workbench.service", f"--port={port}"]
    if checkpoint:
        cmd.append(f"--checkpoint={checkpoint}")
    if faces:
        cmd.append(f"--faces={faces}")
    return cmd


def wait_ready(url: str, proc: subprocess.Popen | None = None, timeout: float = 180.0) -> None:
    """Block until ``url``/health answers (or the process died / time ran out: RuntimeError)."""
    import urllib.request

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"the analysis service exited with code {proc.returncode} while starting")
        try:
            with urllib.request.urlopen(url + "/health", timeout=2) as r:  # noqa: S310 - localhost
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.3)
    raise RuntimeError(f"the analysis service at {url} did not start within {timeout:.0f} s")


class Supervisor:
    """Runs the analysis service and starts it again whenever it exits (a crash, a kill)."""

    def __init__(self, cmd: list[str], env: dict[str, str], url: str) -> None:
        self.cmd, self.env, self.url = cmd, env, url
        self.proc: subprocess.Popen | None = None
        self.restarts = 0
        self._stop = threading.Event()

    def start(self) -> None:
        self.proc = subprocess.Popen(self.cmd, env=self.env)
        wait_ready(self.url, self.proc)
        threading.Thread(target=self._watch, daemon=True).start()

    def _watch(self) -> None:
        while not self._stop.is_set():
            assert self.proc is not None
            code = self.proc.wait()
            if self._stop.is_set():
                return
            self.restarts += 1
            print(f"CQA-Face Workbench: the analysis service exited ({code}); restarting it "
                  f"(restart {self.restarts})", file=sys.stderr, flush=True)
            time.sleep(min(5.0, 0.5 * self.restarts))
            self.proc = subprocess.Popen(self.cmd, env=self.env)

    def stop(self) -> None:
        self._stop.set()
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()


def serve(port: int = DEFAULT_PORT, faces: str | None = None, checkpoint: str | None = None,
          debug: bool = False, preheat: bool = True, service_url: str | None = None,
          service_port: int | None = None, pool: int | None = None) -> int:
    """Run the analysis service and Voila in the foreground (Ctrl-C stops both); works from any folder.

    ``service_url`` (or env ``CQA_ANALYSIS_URL``) uses a service that runs elsewhere (say, on a
    GPU box) instead of starting one here.
    """
    faces = faces or os.environ.get("CQA_FACES")
    if faces and not Path(faces).expanduser().is_dir():
        raise FileNotFoundError(f"--faces {faces}: no such folder")
    if checkpoint and not Path(checkpoint).expanduser().exists():
        raise FileNotFoundError(f"--checkpoint {checkpoint}: no such file")
    env = kernel_env(faces, checkpoint, debug)
    service_url = service_url or os.environ.get("CQA_ANALYSIS_URL")
    supervisor = None
    if service_url:
        wait_ready(service_url.rstrip("/"), timeout=30)
    else:
        sport = service_port or free_port()
        service_url = f"http://127.0.0.1:{sport}"
        print(f"CQA-Face Workbench: starting the analysis service on {service_url} (model, aligner, cache)",
              flush=True)
        supervisor = Supervisor(service_command(sport, env.get("CQA_CHECKPOINT"), env.get("CQA_FACES")), env,
                                service_url)
        supervisor.start()
    env["CQA_ANALYSIS_URL"] = service_url
    cmd = voila_command(port, debug, preheat, pool)
    print(f"CQA-Face Workbench: http://localhost:{port}/  ({gallery_source(faces)}; Ctrl-C to stop)", flush=True)
    proc = subprocess.Popen(cmd, env=env)
    signal.signal(signal.SIGTERM, lambda *_: proc.terminate())  # `kill` stops Voila and its kernels too
    try:
        return proc.wait()
    except KeyboardInterrupt:
        proc.terminate()
        proc.wait(timeout=10)
        return 130
    finally:
        if supervisor is not None:
            supervisor.stop()
