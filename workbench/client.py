"""The dashboard kernel's side of the analysis service: HTTP calls, no torch.

``ServiceClient`` has the methods of ``workbench.service.engine.Engine`` (the ``Backend`` protocol of
``workbench.session``) and sends each to the service at ``Settings.service_url``. Faces and
analyses travel in ``workbench.wire``'s format (never unpickled).

While a call waits, a watcher thread asks the service how many requests are ahead of it and
reports "busy: N requests ahead of you" through :attr:`status` (the dashboard's message area);
when the service cannot be reached (a restart after a crash), the call retries for
:data:`RETRY_S` seconds, saying so, before it gives up with a plain error. No call hangs: every
request has a timeout. Every request but ``/health`` carries the service's token
(``Authorization: Bearer``, ``Settings.service_token`` from ``CQA_SERVICE_TOKEN``); a gallery's
summaries go in calls of at most ``wire.MAX_FACES`` faces and half of ``wire.MAX_BODY`` bytes.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable
from typing import Any

import numpy as np

from cqa_core.explain.result import FaceAnalysis, MaskEffect
from workbench.wire import (
    MAX_BODY,
    MAX_FACES,
    Face,
    FaceSummary,
    array_ref,
    decode,
    face_ref,
)

RETRY_S = 90.0
"""How long a call keeps retrying while the service is unreachable or says it is full."""
TIMEOUT_S = 300.0
"""The longest one request may take (integrated gradients of a pair on a busy CPU: ~10 s)."""
BUSY_AFTER_S = 0.8
"""A call still waiting after this long starts reporting its place in the queue."""


class ServiceError(RuntimeError):
    """The analysis service could not be reached, or failed; the message is for the viewer."""


class ServiceClient:
    """Calls to one analysis service; ``status(text or None)`` receives busy / restart notes."""

    remote = True

    def __init__(self, url: str, token: str | None = None) -> None:
        self.url = url.rstrip("/")
        self.headers = {"Content-Type": "application/json", **({"Authorization": f"Bearer {token}"} if token else {})}
        self.status: Callable[[str | None], None] = lambda text: None
        self._info: dict[str, Any] | None = None

    # ---- transport ---------------------------------------------------------------------------
    def _request(self, path: str, body: dict[str, Any] | None = None, timeout: float = TIMEOUT_S) -> bytes:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.url + path, data=data, method="GET" if body is None else "POST",
                                     headers=self.headers)
        with urllib.request.urlopen(req, timeout=timeout) as resp:  # noqa: S310 - our own service URL
            return resp.read()

    def _watch(self, rid: str, done: threading.Event) -> None:
        """Report the request's place in the queue until it is answered."""
        if done.wait(BUSY_AFTER_S):
            return
        while not done.is_set():
            try:
                q = json.loads(self._request(f"/queue?id={rid}", timeout=5))
                ahead = q.get("ahead", 0)
                self.status(f"busy: {ahead} request{'s' if ahead != 1 else ''} ahead of you "
                            f"({q.get('pending', 0)} waiting in all); this updates by itself")
            except (OSError, ValueError):
                pass
            done.wait(1.0)

    def call(self, path: str, body: dict[str, Any]) -> bytes:
        """POST ``body`` to ``path`` with busy reports and retries; the response bytes."""
        rid = uuid.uuid4().hex
        body = {**body, "id": rid}
        deadline = time.monotonic() + RETRY_S
        done = threading.Event()
        watcher = threading.Thread(target=self._watch, args=(rid, done), daemon=True)
        watcher.start()
        said = False
        try:
            while True:
                try:
                    return self._request(path, body)
                except urllib.error.HTTPError as exc:
                    detail = _error_text(exc)
                    if exc.code == 503 and exc.headers.get("Retry-After") and time.monotonic() < deadline:
                        self.status(f"busy: the analysis service is full ({detail}); retrying by itself")  # queue full
                        said = True
                        time.sleep(1.0)
                        continue
                    if exc.code in (401, 403):
                        raise ServiceError(f"the analysis service at {self.url} refused this dashboard's token "
                                           "(CQA_SERVICE_TOKEN)") from None
                    raise (ValueError(detail) if exc.code in (400, 404, 413, 422) else ServiceError(detail)) from None
                except (urllib.error.URLError, ConnectionError, TimeoutError) as exc:
                    if time.monotonic() >= deadline:
                        raise ServiceError(f"the analysis service at {self.url} is not answering ({_reason(exc)}); "
                                           "try again in a minute") from None
                    self.status("the analysis service is restarting; retrying by itself")
                    said = True
                    time.sleep(1.0)
        finally:
            done.set()
            if said or watcher.is_alive():
                self.status(None)

    # ---- the Backend methods (those of Engine) ------------------------------------------------
    def info(self) -> dict[str, Any]:
        if self._info is None:
            self._info = json.loads(self.call("/info", {}))
        return self._info

    def analyse(self, face: Face, other: Face | None = None, methods: tuple[str, ...] = ("gradcam",),
                model: str | None = None, viewer: str | None = None) -> FaceAnalysis:
        body = {"face": face_ref(face), "other": face_ref(other), "methods": list(methods), "checkpoint": model,
                "viewer": viewer}
        return decode(self.call("/analyse", body))

    def summaries(self, faces: list[Face], model: str | None = None, viewer: str | None = None) -> list[FaceSummary]:
        rows: list[dict[str, Any]] = []
        for refs in _chunks([face_ref(f) for f in faces]):
            rows += json.loads(self.call("/summaries", {"faces": refs, "checkpoint": model, "viewer": viewer}))
        return [FaceSummary.from_row(r) for r in rows]

    def mask_effect(self, face: Face, masked: np.ndarray, alpha: np.ndarray | None,
                    model: str | None = None, viewer: str | None = None) -> MaskEffect:
        body = {"face": face_ref(face), "masked": array_ref(masked), "alpha": array_ref(alpha), "checkpoint": model,
                "viewer": viewer}
        return decode(self.call("/mask_effect", body))

    def load(self, spec: str) -> dict[str, Any]:
        """Ask the service to load a recognizer (a bad file fails here, in plain words): its facts."""
        return json.loads(self.call("/model", {"spec": spec}))

    def threshold(self, spec: str | None = None) -> dict[str, Any]:
        """The model's LFW threshold, or {"computing": note} while the service computes it."""
        return json.loads(self.call("/threshold", {"spec": spec}))

    def start_run(self, request: dict[str, Any]) -> dict[str, Any]:
        """Start a benchmark run in the service (``cqa eval --out``, ``workbench.service.runjobs``): its status."""
        return json.loads(self.call("/runs", request))

    def run_status(self, job: str) -> dict[str, Any]:
        """How far a started run is: state, stage, done / total, percent, message."""
        return json.loads(self.call("/run_status", {"job": job}))

    def forget(self, viewer: str) -> bool:
        """The viewer left: the service drops the analyses of its uploads (never raises)."""
        return self.viewer("bye", viewer) != {}

    # ---- viewer counts (the dashboard's first cell; never retried, never raises) -------------
    def viewer(self, event: str, vid: str) -> dict[str, int]:
        """Say a viewer is loading ("hello"), drawn ("ready") or gone ("bye"); {} when the service cannot be reached."""
        try:
            return json.loads(self._request("/viewers", {"event": event, "id": vid}, timeout=3))
        except (OSError, ValueError):
            return {}


def _chunks(refs: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """Face references in calls of at most MAX_FACES faces and about MAX_BODY / 2 bytes each."""
    out: list[list[dict[str, Any]]] = [[]]
    size = 0
    for ref in refs:
        n = sum(len(v) for v in ref.values() if isinstance(v, str))
        if out[-1] and (len(out[-1]) >= MAX_FACES or size + n > MAX_BODY // 2):
            out.append([])
            size = 0
        out[-1].append(ref)
        size += n
    return [c for c in out if c] or [[]]


def _error_text(exc: urllib.error.HTTPError) -> str:
    try:
        return json.loads(exc.read()).get("error", exc.reason)
    except (ValueError, OSError):
        return f"HTTP {exc.code} {exc.reason}"


def _reason(exc: BaseException) -> str:
    return str(getattr(exc, "reason", exc))
