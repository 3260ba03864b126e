"""Serve the dashboard notebook with Voila: settings go to the kernel as env vars.

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
    env.setdefault("CQA_TORCH_THREADS", "1")
    env.setdefault("OMP_NUM_THREADS", "1")
    return env


def voila_command(port: int = DEFAULT_PORT, debug: bool = False, preheat: bool = False) -> list[str]:
    """Voila on the dashboard notebook: lab template, sources stripped, no tracebacks, no browser.

    Voila reads ``voila.json`` from ``DASHBOARD_DIR`` only (not the caller's folder), so the
    command works from any working directory.

    ``preheat`` keeps one kernel that has already run the dashboard waiting for the next visitor
    (Voila's ``preheat_kernel``): a page then opens in ~4 s instead of ~10 s on a busy 2-core
    machine, at the cost of one idle kernel (~1 GB) and a refill after each visit.
    """
    if not NOTEBOOK.is_file() or not VOILA_CONFIG.is_file():
        raise FileNotFoundError(f"the dashboard is missing from this install: {NOTEBOOK} / {VOILA_CONFIG.name}")
    return [
        sys.executable, "-m", "voila", str(NOTEBOOK), f"--Voila.config_file_paths={DASHBOARD_DIR}",
        f"--port={port}", "--no-browser", "--template=lab", "--strip_sources=True",
        f"--show_tracebacks={debug}", "--Voila.ip=127.0.0.1", f"--preheat_kernel={preheat}",
    ]


def gallery_source(faces: str | None) -> str:
    """Where the gallery will come from, in words."""
    from cqa_core.data import shared_data_dir

    if faces:
        return f"faces from {faces}"
    lfw = shared_data_dir() / "lfw-deepfunneled"
    return f"the first 60 people of {lfw}" if lfw.is_dir() else "no gallery (upload box only)"


def serve(port: int = DEFAULT_PORT, faces: str | None = None, checkpoint: str | None = None,
          debug: bool = False, preheat: bool = True) -> int:
    """Run Voila in the foreground (Ctrl-C stops it); works from any folder, with or without a clone."""
    faces = faces or os.environ.get("CQA_FACES")
    if faces and not Path(faces).expanduser().is_dir():
        raise FileNotFoundError(f"--faces {faces}: no such folder")
    if checkpoint and not Path(checkpoint).expanduser().exists():
        raise FileNotFoundError(f"--checkpoint {checkpoint}: no such file")
    cmd = voila_command(port, debug, preheat)
    print(f"CQA-Face Workbench: http://localhost:{port}/  ({gallery_source(faces)}; Ctrl-C to stop)", flush=True)
    proc = subprocess.Popen(cmd, env=kernel_env(faces, checkpoint, debug))
    signal.signal(signal.SIGTERM, lambda *_: proc.terminate())  # `kill` stops Voila and its kernels too
    try:
        return proc.wait()
    except KeyboardInterrupt:
        proc.terminate()
        proc.wait(timeout=10)
        return 130
