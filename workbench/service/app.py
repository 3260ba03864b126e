"""The analysis service's HTTP side: an ``Engine`` behind a ``JobQueue``, served by Starlette.

Built on Starlette + uvicorn: an ASGI app is the smallest standard way to serve a few JSON/binary
routes with a queue behind them, and uvicorn is a maintained server (no hand-made protocol).
Errors in the input (a bad image, an unknown method, a missing checkpoint) answer 422 with a
one-line message; a full queue 503 (the client waits and retries); tracebacks stay in the log.

Routes: ``GET /health``, ``POST /info``, ``POST /analyse``, ``POST /summaries``,
``POST /mask_effect``, ``POST /model`` (load a recognizer by its spec: its facts),
``POST /threshold`` (a model's LFW threshold, or "computing"), ``GET /queue?id=``, ``GET /stats``, ``POST /viewers``
(kernels say hello / ready, for the "N viewers loading ahead of you" note of ``workbench.loading``).
Bodies and answers are ``workbench.service.wire``'s.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from collections import OrderedDict
from concurrent.futures import Future
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from workbench.service import wire
from workbench.service.engine import Engine
from workbench.service.queue import BATCH_MAX, Job, JobQueue
from workbench.service.wire import Face

log = logging.getLogger("cqa.service")
VIEWER_STALE_S = 300.0
"""A viewer that said hello this long ago without saying ready no longer counts as loading."""


class AnalysisService:
    """What the routes call: jobs for the engine, through the queue; viewer counts; statistics."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.queue = JobQueue(self._run)
        self.cond = threading.Lock()
        self.loading: OrderedDict[str, float] = OrderedDict()  # viewers not drawn yet

    def submit(self, kind: str, body: dict[str, Any]) -> Future:
        return self.queue.submit(kind, body)

    # ---- model work (the queue's worker thread only) -----------------------------------------
    def _run(self, jobs: list[Job]) -> list[Any]:
        eng = self.engine
        if jobs[0].kind == "face":
            models = {j.body.get("checkpoint") for j in jobs}
            if len(models) > 1:  # different models: no shared batch
                raise ValueError("mixed checkpoints in one batch")
            out = eng.analyse_many([_face(j.body["face"]) for j in jobs], model=models.pop())
            return [wire.encode(fa) for fa in out]
        b = jobs[0].body
        kind = jobs[0].kind
        if kind == "info":
            return [eng.info()]
        if kind == "pair":
            fa = eng.analyse(_face(b["face"]), _face(b["other"]), tuple(b.get("methods") or ("gradcam",)),
                             model=b.get("checkpoint"))
            return [wire.encode(fa)]
        if kind == "summaries":
            faces = [_face(r) for r in b["faces"]]
            rows = []
            for i in range(0, len(faces), BATCH_MAX):
                rows += [s.row() for s in eng.summaries(faces[i:i + BATCH_MAX], model=b.get("checkpoint"))]
            return [rows]
        if kind == "mask_effect":
            eff = eng.mask_effect(_face(b["face"]), wire.read_array(b["masked"]), wire.read_array(b.get("alpha")),
                                  model=b.get("checkpoint"))
            return [wire.encode(eff)]
        if kind == "model":
            return [eng.load(str(b["spec"]))]
        if kind == "threshold":
            return [eng.threshold(b.get("spec"))]
        raise ValueError(f"unknown request {kind!r}")

    # ---- viewers, statistics, warm-up --------------------------------------------------------
    def viewer(self, event: str, vid: str) -> dict[str, int]:
        """A viewer kernel says hello (loading) or ready (drawn); hello answers how many load ahead of it."""
        with self.cond:
            if event == "hello":
                self.loading.setdefault(vid, time.monotonic())
                stale = [k for k, t in self.loading.items() if time.monotonic() - t > VIEWER_STALE_S]
                for k in stale:  # gone without a word
                    self.loading.pop(k)
            else:
                self.loading.pop(vid, None)
            ids = list(self.loading)
        return {"ahead": ids.index(vid) if vid in ids else 0, "loading": len(ids)}

    def stats(self) -> dict[str, Any]:
        an = self.engine.analyser
        return {"requests": self.queue.requests, "pending": len(self.queue), "computed": an.computed,
                "cached": len(an), "batches": {str(k): v for k, v in sorted(an.batches.items())},
                "max_runs_per_face": max(an.runs.values(), default=0), "faces_run": len(an.runs), "pid": os.getpid()}

    def warm(self, faces: list[Face], batch: int = 8) -> None:
        """Analyse the gallery in batches, queued like any request (viewers interleave)."""
        t0 = time.monotonic()
        for i in range(0, len(faces), batch):
            futures = [self.submit("face", {"face": f, "id": f"warm-{i + k}"}) for k, f in enumerate(faces[i:i + batch])]
            for fut in futures:
                try:
                    fut.result()
                except Exception as exc:  # noqa: BLE001 - a bad gallery file is the viewer's message, later
                    log.warning("warm-up: %s", exc)
            log.info("warm-up: %d / %d gallery faces analysed", min(i + batch, len(faces)), len(faces))
        log.info("warm-up done: %d faces in %.1f s", len(faces), time.monotonic() - t0)


def _face(ref: dict[str, Any] | Face) -> Face:
    """A wire face reference, or a ``Face`` the service queued itself (its warm-up)."""
    return ref if isinstance(ref, Face) else wire.read_face(ref)


def _plain(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text[:300]


def create_app(service: AnalysisService) -> Starlette:
    """The Starlette app over a service."""

    async def run(kind: str, request: Request) -> Any:
        body = await request.json() if request.method == "POST" else {}
        if kind == "analyse":
            kind = "pair" if body.get("other") else "face"
        try:
            result = await asyncio.wrap_future(service.submit(kind, body))
        except OverflowError as exc:
            return JSONResponse({"error": f"busy: {exc}"}, status_code=503)
        except (ValueError, KeyError, FileNotFoundError, TypeError) as exc:
            return JSONResponse({"error": _plain(exc)}, status_code=422)
        except Exception as exc:  # noqa: BLE001 - a model failure is one message, the service lives on
            log.exception("request %s failed", kind)
            return JSONResponse({"error": f"analysis failed: {_plain(exc)}"}, status_code=500)
        if isinstance(result, bytes):
            return Response(result, media_type="application/x-npz")
        return JSONResponse(result)

    def route(kind: str):
        async def endpoint(request: Request) -> Any:
            return await run(kind, request)
        return endpoint

    async def health(request: Request) -> Any:
        return PlainTextResponse("ok")

    async def queue(request: Request) -> Any:
        return JSONResponse(service.queue.place(request.query_params.get("id", "")))

    async def stats(request: Request) -> Any:
        return JSONResponse(service.stats())

    async def viewers(request: Request) -> Any:
        body = await request.json()
        return JSONResponse(service.viewer(str(body.get("event", "hello")), str(body.get("id", ""))))

    return Starlette(routes=[
        Route("/health", health), Route("/queue", queue), Route("/stats", stats),
        Route("/viewers", viewers, methods=["POST"]),
        *(Route(f"/{k}", route(k), methods=["POST"]) for k in ("info", "analyse", "summaries", "mask_effect",
                                                                  "model", "threshold")),
    ])
