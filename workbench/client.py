"""The dashboard kernel's side of the analysis service: HTTP calls, no torch.

``ServiceClient`` has the methods of ``workbench.session.Engine`` that a Session uses and sends
each to ``workbench.service`` (``CQA_ANALYSIS_URL``). Faces travel as their file bytes (a gallery
photo) or raw pixels (an upload, a masked face), base64 in JSON; analyses come back in
``cqa_core.explain.result``'s .npz wire format (never unpickled).

While a call waits, a watcher thread asks the service how many requests are ahead of it and
reports "busy: N requests ahead of you" through :attr:`status` (the dashboard's message area);
when the service cannot be reached (a restart after a crash), the call retries for
:data:`RETRY_S` seconds, saying so, before it gives up with a plain error. No call hangs: every
request has a timeout.
"""

from __future__ import annotations

import base64
import json
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

RETRY_S = 90.0
"""How long a call keeps retrying while the service is unreachable or says it is full."""
TIMEOUT_S = 300.0
"""The longest one request may take (integrated gradients of a pair on a busy CPU: ~10 s)."""
BUSY_AFTER_S = 0.8
"""A call still waiting after this long starts reporting its place in the queue."""


class ServiceError(RuntimeError):
    """The analysis service could not be reached, or failed; the message is for the viewer."""


def face_ref(source: Any, align: str) -> dict[str, Any] | None:
    """A face for the wire: file bytes for a path, raw pixels for an array."""
    if source is None:
        return None
    if isinstance(source, (str, Path)):
        path = Path(source)
        if not path.is_file():
            raise ValueError(f"image file not found: {path}")
        return {"file": base64.b64encode(path.read_bytes()).decode(), "name": path.name, "align": align}
    arr = np.ascontiguousarray(source)
    if arr.dtype != np.uint8 or arr.ndim != 3 or arr.shape[2] != 3:
        raise ValueError(f"expected an HxWx3 uint8 RGB image, got shape {arr.shape} dtype {arr.dtype}")
    return {"pixels": base64.b64encode(arr.tobytes()).decode(), "shape": list(arr.shape), "align": align}


def array_ref(arr: np.ndarray | None) -> dict[str, Any] | None:
    if arr is None:
        return None
    arr = np.ascontiguousarray(arr)
    return {"data": base64.b64encode(arr.tobytes()).decode(), "shape": list(arr.shape), "dtype": str(arr.dtype)}


class ServiceClient:
    """Calls to one analysis service; ``status(text or None)`` receives busy / restart notes."""

    def __init__(self, url: str) -> None:
        self.url = url.rstrip("/")
        self.status: Callable[[str | None], None] = lambda text: None
        self._info: dict[str, Any] | None = None

    # ---- transport ---------------------------------------------------------------------------
    def _request(self, path: str, body: dict[str, Any] | None = None, timeout: float = TIMEOUT_S) -> bytes:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.url + path, data=data, method="GET" if body is None else "POST",
                                     headers={"Content-Type": "application/json"})
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
                    if exc.code == 503 and time.monotonic() < deadline:  # queue full: wait our turn
                        self.status(f"busy: the analysis service is full ({detail}); retrying by itself")
                        said = True
                        time.sleep(1.0)
                        continue
                    raise (ValueError(detail) if exc.code in (400, 404, 422) else ServiceError(detail)) from None
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

    # ---- the Engine methods a Session uses ---------------------------------------------------
    def info(self) -> dict[str, Any]:
        if self._info is None:
            self._info = json.loads(self.call("/info", {}))
        return self._info

    def analyse(self, face: Any, other: Any = None, methods: tuple[str, ...] = ("gradcam",), align: str = "mtcnn",
                other_align: str = "mtcnn", checkpoint: str | None = None):
        from cqa_core.explain.result import decode

        body = {"face": face_ref(face, align), "other": face_ref(other, other_align), "methods": list(methods),
                "checkpoint": checkpoint}
        return decode(self.call("/analyse", body))

    def summaries(self, faces: list[Any], aligns: list[str]) -> list:
        from workbench.session import FaceSummary

        body = {"faces": [face_ref(f, a) for f, a in zip(faces, aligns, strict=True)]}
        rows = json.loads(self.call("/summaries", body))
        return [FaceSummary(np.asarray(r["quality"], np.float32), r["overall"], r["cal"], r["embedding_norm"])
                for r in rows]

    def mask_effect(self, face: Any, align: str, masked: np.ndarray, alpha: np.ndarray | None):
        from cqa_core.explain.result import decode

        body = {"face": face_ref(face, align), "masked": array_ref(masked), "alpha": array_ref(alpha)}
        return decode(self.call("/mask_effect", body))

    def model_for(self, checkpoint: str | None) -> str | None:
        """Ask the service to load a second checkpoint (a bad path fails here, in plain words)."""
        if checkpoint:
            self.call("/checkpoint", {"path": checkpoint})
        return checkpoint


def _error_text(exc: urllib.error.HTTPError) -> str:
    try:
        return json.loads(exc.read()).get("error", exc.reason)
    except (ValueError, OSError):
        return f"HTTP {exc.code} {exc.reason}"


def _reason(exc: BaseException) -> str:
    return str(getattr(exc, "reason", exc))
