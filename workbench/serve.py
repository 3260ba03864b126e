"""Serve the dashboard: the analysis service (one model process) + Voila (thin viewer kernels).

``cqa workbench`` starts ``workbench.service`` on a free port, waits until it answers, restarts it
whenever it exits, and runs Voila with ``CQA_ANALYSIS_URL`` pointing at it, so each viewer's
kernel holds only widgets. The ``Settings`` built by the CLI reach the service as its flags and
the kernels as ``CQA_*`` variables (``Settings.to_env``), where the dashboard notebook rebuilds them.

The notebook and its Voila settings are package data in ``workbench/dashboard/`` (``dashboard.ipynb``,
``voila.json``), so an installed wheel serves from any folder; ``notebooks/dashboard.ipynb`` is a
symlink to the same file for JupyterLab. ``cqa workbench`` calls :func:`serve`; tests call
:func:`voila_command` + :func:`kernel_env` to start the same server as a subprocess on a free port.

Access (``workbench.access``): Voila listens on ``--host`` (default 127.0.0.1) under
``--base-url``, behind a token or password unless ``--no-auth`` (loopback only). The analysis
service always listens on 127.0.0.1 here and needs its own token (``CQA_SERVICE_TOKEN``, made at
start when unset), which the service and the kernels get in their environment. It loads any model
path a viewer types (``--any-model-path``) only when ``access.owner_only``; a dashboard others can
open refuses a service elsewhere that does.
"""

from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

from cqa_core.settings import ENV, Settings
from workbench.access import Access
from workbench.client import ServiceClient

DEFAULT_PORT = 8866
DASHBOARD_DIR = Path(__file__).resolve().parent / "dashboard"
NOTEBOOK = DASHBOARD_DIR / "dashboard.ipynb"
VOILA_CONFIG = DASHBOARD_DIR / "voila.json"
KERNEL_TRANSPORT = [] if sys.platform == "win32" else ["--KernelManager.transport=ipc"]
"""Kernels talk to Voila over Unix sockets in Voila's own folder, not TCP ports: ten pool kernels started
at once were given the same port (jupyter_client picks a free port, then the kernel binds it later),
and every restart reused it. jupyter_client has no IPC transport on Windows."""


def free_port() -> int:
    """An unused TCP port on localhost."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


KERNEL_SETTINGS = ("faces", "people", "align", "data_root", "service_url", "service_token", "debug", "edc_results",
                   "runs")
"""What a dashboard kernel reads (its gallery, the service it calls, its pages): the model, its
weights and caches stay with the service, and Voila's login token with Voila (``workbench.access``)."""


def kernel_env(settings: Settings, base: dict[str, str] | None = None) -> dict[str, str]:
    """The environment Voila (and so each dashboard kernel) runs with: the :data:`KERNEL_SETTINGS` only."""
    env = {k: v for k, v in (os.environ if base is None else base).items() if k not in ENV.values()}
    env.update({k: v for k, v in settings.to_env().items() if k in {ENV[f] for f in KERNEL_SETTINGS}})
    # our Voila template (workbench/dashboard/voila/templates/cqa: lab + a plain loading note)
    env["JUPYTER_PATH"] = os.pathsep.join(p for p in (str(DASHBOARD_DIR), env.get("JUPYTER_PATH", "")) if p)
    env.setdefault("OMP_NUM_THREADS", "1")
    return env


def service_env(settings: Settings) -> dict[str, str]:
    """The analysis service's environment: its settings, less the model (a flag: :func:`service_command`)
    and Voila's login token."""
    env = {k: v for k, v in os.environ.items() if k not in ENV.values()}
    env.update({k: v for k, v in settings.to_env().items() if k not in (ENV["checkpoint"], ENV["token"])})
    return env


def voila_command(port: int = DEFAULT_PORT, debug: bool = False, preheat: bool = False,
                  pool: int | None = None, access: Access | None = None,
                  refill_after: float | None = None) -> list[str]:
    """Voila on the dashboard notebook: our ``cqa`` template (lab + a plain loading note), sources stripped,
    no tracebacks, no browser.

    Voila reads ``voila.json`` from ``DASHBOARD_DIR`` only (not the caller's folder), so the
    command works from any working directory.

    ``preheat`` keeps ``default_pool_size`` kernels (10, voila.json) that have already run the
    dashboard waiting for the next visitors (Voila's ``preheat_kernel``), refilled 60 s after use
    (``VoilaKernelManager.fill_delay``, ``refill_after``: a shorter delay makes the refill compete
    with the pages still loading; docs/benchmarks.md). A visitor who finds the pool used up gets a
    kernel of its own at once, never the refill's (``workbench.voila_server.ReadyPool``). With the analysis service a viewer kernel holds only
    widgets (~130 MB RSS, no torch), so ten idle ones cost ~1.3 GB and a lab of ten that arrives
    at once gets warm kernels.
    ``voila.json`` also culls kernels idle for 15 minutes with no page connected. ``pool``
    overrides the pool size (``cqa workbench --pool N``: a class of 30 wants more, a laptop fewer).
    ``access`` sets the address, prefix and login (default: 127.0.0.1, ``/``, none; the caller adds
    ``access.voila_env`` to Voila's environment). ``workbench.voila_server`` is stock Voila with its
    one unchecked websocket behind the login.
    """
    if not NOTEBOOK.is_file() or not VOILA_CONFIG.is_file():
        raise FileNotFoundError(f"the dashboard is missing from this install: {NOTEBOOK} / {VOILA_CONFIG.name}")
    return [
        sys.executable, "-m", "workbench.voila_server", str(NOTEBOOK), f"--Voila.config_file_paths={DASHBOARD_DIR}",
        f"--port={port}", "--no-browser", "--template=cqa", "--strip_sources=True",
        f"--show_tracebacks={debug}", *(access or Access()).voila_args(), f"--preheat_kernel={preheat}",
        *([f"--VoilaConfiguration.default_pool_size={pool}"] if pool is not None else []),
        *([f"--VoilaKernelManager.fill_delay={refill_after}"] if refill_after is not None else []),
        *KERNEL_TRANSPORT,
    ]


def service_command(port: int, settings: Settings, any_model_path: bool = False) -> list[str]:
    """The analysis service (``python -m workbench.service``) on ``port`` with ``settings`` as its flags;
    ``any_model_path``: viewers may load any model file (only for a dashboard its owner alone can open)."""
    cmd = [sys.executable, "-m", "workbench.service", f"--port={port}", f"--people={settings.people}",
           f"--align={settings.align.value}"]
    if any_model_path:
        cmd.append("--any-model-path")
    if settings.checkpoint:
        cmd.append(f"--model={settings.checkpoint}")
    if settings.faces:
        cmd.append(f"--faces={settings.faces}")
    if settings.models_dir:
        cmd.append(f"--models={settings.models_dir}")
    return cmd


def wait_ready(url: str, proc: subprocess.Popen | None = None, timeout: float = 180.0,
               token: str | None = None) -> None:
    """Block until ``url``/health answers (or the process died / time ran out: RuntimeError);
    with ``token``, then check that the service takes it (RuntimeError if it refuses)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"the analysis service exited with code {proc.returncode} while starting")
        try:
            with urllib.request.urlopen(url + "/health", timeout=2) as r:  # noqa: S310 - localhost
                if r.status == 200:
                    break
        except OSError:
            time.sleep(0.3)
    else:
        raise RuntimeError(f"the analysis service at {url} did not start within {timeout:.0f} s")
    if token is not None:
        req = urllib.request.Request(url + "/stats", headers={"Authorization": f"Bearer {token}"})
        try:
            urllib.request.urlopen(req, timeout=10).close()  # noqa: S310 - the service's URL
        except urllib.error.HTTPError as exc:
            if exc.code in (401, 403):
                raise RuntimeError(f"the analysis service at {url} refuses CQA_SERVICE_TOKEN: "
                                   "set the token it printed at start") from None


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


def checked(settings: Settings) -> Settings:
    """``settings`` with the gallery folder and checkpoint made absolute, or a plain error if missing."""
    if settings.faces and not settings.faces.is_dir():
        raise FileNotFoundError(f"--faces {settings.faces}: no such folder")
    if settings.checkpoint and not Path(settings.checkpoint).exists():
        raise FileNotFoundError(f"--checkpoint {settings.checkpoint}: no such file")
    if settings.models_dir and not settings.models_dir.is_dir():
        raise FileNotFoundError(f"--models {settings.models_dir}: no such folder")
    return settings.replace(faces=settings.faces and settings.faces.resolve(),
                            checkpoint=settings.checkpoint and str(Path(settings.checkpoint).resolve()),
                            models_dir=settings.models_dir and settings.models_dir.resolve())


def serve(settings: Settings, port: int = DEFAULT_PORT, preheat: bool = True, service_port: int | None = None,
          pool: int | None = None, access: Access | None = None, refill_after: float | None = None) -> int:
    """Run the analysis service and Voila in the foreground (Ctrl-C stops both); works from any folder.

    ``settings.service_url`` uses a service that runs elsewhere (say, on a GPU box) instead of
    starting one here; its token comes from ``settings.service_token`` (``CQA_SERVICE_TOKEN``).
    ``access``: Voila's address, prefix and login (default ``Access.choose()``: loopback, a token).
    """
    settings = checked(settings)
    access = access or Access.choose()
    supervisor = None
    if settings.service_url:
        if not settings.service_token:
            raise ValueError(f"--service {settings.service_url} needs that service's token: set CQA_SERVICE_TOKEN "
                             "(the service prints one at start when it has none)")
        wait_ready(settings.service_url, timeout=30, token=settings.service_token)
        if not access.owner_only and ServiceClient(settings.service_url, settings.service_token).info().get("any_model_path"):
            raise ValueError(f"--service {settings.service_url} loads any model path (--any-model-path): a dashboard "
                             "others can open needs a service without it (--models DIR for the lab's models)")
    else:
        sport = service_port or free_port()
        url = f"http://127.0.0.1:{sport}"
        settings = settings.replace(service_token=settings.service_token or secrets.token_urlsafe(32))
        print(f"CQA-Face Workbench: starting the analysis service on {url} (model, aligner, cache)", flush=True)
        supervisor = Supervisor(service_command(sport, settings, any_model_path=access.owner_only),
                                service_env(settings), url)
        supervisor.start()
        settings = settings.replace(service_url=url)
    cmd = voila_command(port, settings.debug, preheat, pool, access, refill_after)
    print(f"CQA-Face Workbench: {access.url(port)}  ({settings.describe_gallery()}; Ctrl-C to stop)", flush=True)
    proc = subprocess.Popen(cmd, env=access.voila_env(kernel_env(settings)))
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
