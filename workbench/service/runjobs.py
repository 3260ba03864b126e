"""Benchmark runs started from the dashboard: ``cqa eval --out`` in a child process of the analysis service.

    jobs = RunJobs(settings)
    job = jobs.start({"name": "cqa-lfw", "data": "lfw", "protocol": "verify", "limit": 600, "spec": None})
    jobs.status(job["id"])   # {"state": "running", "stage": "score", "done": 3, "total": 10, "percent": 30, ...}

The run is a separate, niced process (the service's own event loop and model never wait on it, so
other viewers' clicks are answered while it runs); its progress is read from the tqdm bars it
writes to stderr. One run at a time. A viewer names only what the service allows: a named data set
(:data:`DATA`, never a path on this machine), a pair protocol, a model the guard's allowlist passed
(``spec``; None: the served model), and a new folder name under ``Settings.runs_dir``.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cqa_core.settings import Settings

DATA = ("lfw", "celeba299")
PROTOCOLS = ("verify", "masked-m2n", "masked-m2m", "cross-quality")
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
MAX_LIMIT = 1_000_000
BAR = re.compile(r"^\s*(?P<stage>[^:\r\n|]{1,60}):\s+(?P<pct>\d{1,3})%\|[^|]*\|\s*(?P<n>\d+)/(?P<total>\d+)")
"""A tqdm bar's line: ``score:  50%|█████     | 1/2 [00:01<00:01,  1.05s/batch]``."""


def parse_bar(line: str) -> tuple[str, int, int] | None:
    """(stage, done, total) of a tqdm line, or None."""
    m = BAR.match(line)
    return (m["stage"].strip(), int(m["n"]), int(m["total"])) if m else None


def eval_command(settings: Settings, request: dict[str, Any], folder: Path) -> list[str]:
    """The ``cqa eval`` command line of a checked request."""
    model = request.get("spec") or settings.checkpoint
    cmd = [sys.executable, "-m", "cqa_core.cli", "eval", "--data", request["data"], "--protocol", request["protocol"],
           "--out", str(folder)]
    if model and model != "default":
        cmd += ["--model", str(model)]
    if request.get("limit"):
        cmd += ["--limit", str(int(request["limit"]))]
    return cmd


class RunJobs:
    """The service's run jobs (one at a time); see the module docstring."""

    def __init__(self, settings: Settings, command: Callable[[Settings, dict[str, Any], Path], list[str]] = eval_command,
                 nice: int = 10) -> None:
        self.settings, self.command, self.nice = settings, command, nice
        self.jobs: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()

    def check(self, request: dict[str, Any]) -> Path:
        """The new run's folder, or ValueError (one line) for a request the service does not run."""
        name, data, protocol, limit = (request.get(k) for k in ("name", "data", "protocol", "limit"))
        if not isinstance(name, str) or not NAME.match(name):
            raise ValueError("a run's name is 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit")
        if data not in DATA:
            raise ValueError(f"data {data!r}: the dashboard runs {', '.join(DATA)}")
        if protocol not in PROTOCOLS:
            raise ValueError(f"protocol {protocol!r}: choose from {', '.join(PROTOCOLS)}")
        if limit is not None and (not isinstance(limit, int) or isinstance(limit, bool) or not 1 <= limit <= MAX_LIMIT):
            raise ValueError(f"limit must be a number of pairs from 1 to {MAX_LIMIT}")
        folder = self.settings.runs_dir / name
        if folder.exists():
            raise ValueError(f"a run named {name} exists already: pick another name")
        return folder

    def start(self, request: dict[str, Any]) -> dict[str, Any]:
        """Start a run (ValueError while another runs, or for a refused request); returns its status."""
        with self._lock:
            busy = next((j for j in self.jobs.values() if j["state"] == "running"), None)
            if busy is not None:
                raise ValueError(f"a run is in progress ({busy['name']}, {busy['percent']}%): start yours when it ends")
            folder = self.check(request)
            folder.parent.mkdir(parents=True, exist_ok=True)
            job = {"id": uuid.uuid4().hex[:12], "name": request["name"], "folder": str(folder), "state": "running",
                   "stage": "starting", "done": 0, "total": 0, "percent": 0, "message": ""}
            env = {**os.environ, **{k: v for k, v in self.settings.to_env().items()
                                    if k not in ("CQA_TOKEN", "CQA_SERVICE_TOKEN", "CQA_ANALYSIS_URL")}}
            proc = subprocess.Popen(self.command(self.settings, request, folder), env=env, stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, start_new_session=True,
                                    preexec_fn=(lambda: os.nice(self.nice)) if hasattr(os, "nice") else None)
            self.jobs[job["id"]] = job
        threading.Thread(target=self._follow, args=(job, proc), daemon=True).start()
        return dict(job)

    def status(self, job_id: str) -> dict[str, Any]:
        """A job's status (ValueError for an unknown id)."""
        job = self.jobs.get(job_id)
        if job is None:
            raise ValueError(f"no run job {job_id!r} on this service")
        return dict(job)

    def _follow(self, job: dict[str, Any], proc: subprocess.Popen) -> None:
        """Read the child's tqdm bars into the job until it exits."""
        out: list[bytes] = []
        reader = threading.Thread(target=lambda: out.append(proc.stdout.read()), daemon=True)
        reader.start()
        last, buf = "", b""

        def read(raw: bytes) -> None:
            nonlocal last
            line = raw.decode(errors="replace").strip()
            bar = parse_bar(line) if line else None
            if bar:
                stage, done, total = bar
                job.update(stage=stage, done=done, total=total, percent=int(100 * done / max(total, 1)))
            elif line:
                last = line

        while chunk := os.read(proc.stderr.fileno(), 4096):
            *lines, buf = re.split(rb"[\r\n]", buf + chunk)
            for raw in lines:
                read(raw)
        read(buf)  # a last bar without its line end
        code = proc.wait()
        reader.join(timeout=5)
        if code == 0 and (Path(job["folder"]) / "run.json").is_file():
            job.update(state="done", percent=100, stage="done", message=f"wrote the run to {job['folder']}")
        else:
            job.update(state="failed", message=last[:300] or f"cqa eval ended with status {code}")
