"""The analysis service's HTTP side: an ``Engine`` behind a ``JobQueue``, served by Starlette.

Built on Starlette + uvicorn: an ASGI app is the smallest standard way to serve a few JSON/binary
routes with a queue behind them, and uvicorn is a maintained server (no hand-made protocol).
Errors in the input (a bad image, an unknown method, malformed JSON) answer 422 with a one-line
message; a full queue 503 with ``Retry-After`` (the client waits and retries); a request that gets
no answer within ``Limits.timeout_s`` 503 with one line (never a hang); tracebacks stay in the log.
Before any work, ``workbench.service.guard`` checks the token (401; every route but ``/health``),
the body's size (413) and fields (422), and that a named model is on the allowlist (422). Every
photo is shrunk to a 512 px longer side before its analysis (``workbench.photo``), and an
answer over ``Limits.max_answer`` bytes is refused in one line (507), never sent.

Routes: ``GET /health``, ``POST /info`` (the model's facts, and ``any_model_path``: whether a viewer may
add any model file or only the allowlist's), ``POST /analyse``, ``POST /summaries``,
``POST /mask_effect``, ``POST /model`` (load a recognizer by its spec: its facts),
``POST /threshold`` (a model's LFW threshold, or "computing"), ``GET /queue?id=``, ``GET /stats``, ``POST /viewers``
(kernels say hello / ready, for the "N viewers loading ahead of you" note of ``workbench.loading``,
and bye when they end: the analyses of that viewer's uploads are dropped, ``Engine.forget``).
A request's ``viewer`` field names who asks: uploads are analysed in that viewer's own cache.
Bodies and answers are ``workbench.wire``'s.
``POST /runs`` starts a benchmark run (``cqa eval --out`` in a child process, ``runjobs``) and
``POST /run_status`` tells how far it is.
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

from cqa_core.data.imageio import MAX_PIXELS
from workbench import wire
from workbench.photo import MAX_PHOTO_SIDE, shrunk
from workbench.service.engine import Engine
from workbench.service.guard import Guard, Refused
from workbench.service.queue import BATCH_MAX, Job, JobQueue
from workbench.service.runjobs import RunJobs
from workbench.wire import Face

log = logging.getLogger("cqa.service")
VIEWER_STALE_S = 300.0
"""A viewer that said hello this long ago without saying ready no longer counts as loading."""


class AnalysisService:
    """What the routes call: jobs for the engine, through the queue; viewer counts; statistics."""

    def __init__(self, engine: Engine, max_pixels: int = MAX_PIXELS, side: int = MAX_PHOTO_SIDE,
                 cache_bytes: int | None = None) -> None:
        self.engine = engine
        if cache_bytes is not None:  # the shared analysis cache's bound in bytes (besides its entry count)
            engine.analyser.maxbytes = cache_bytes
        self.max_pixels = max_pixels  # of one decoded face, from its header (``Limits.max_pixels``)
        self.side = side  # every photo is analysed with its longer side at most this (``workbench.photo``)
        self.queue = JobQueue(self._run)
        self.cond = threading.Lock()
        self.loading: OrderedDict[str, float] = OrderedDict()  # viewers not drawn yet

    def submit(self, kind: str, body: dict[str, Any], tag: str = "") -> Future:
        return self.queue.submit(kind, body, tag)

    # ---- model work (the queue's worker thread only) -----------------------------------------
    def _run(self, jobs: list[Job]) -> list[Any]:
        eng = self.engine
        if jobs[0].kind == "face":
            models = {j.body.get("checkpoint") for j in jobs}
            if len(models) > 1:  # different models: no shared batch
                raise ValueError("mixed checkpoints in one batch")
            out = eng.analyse_many([self._face(j.body["face"]) for j in jobs], model=models.pop(),
                                   viewers=[j.body.get("viewer") for j in jobs])
            return [wire.encode(fa) for fa in out]
        b = jobs[0].body
        kind = jobs[0].kind
        if kind == "info":
            return [eng.info()]
        if kind == "pair":
            methods = b.get("methods")  # [] asks for no maps (a black-box model's row); absent: Grad-CAM
            fa = eng.analyse(self._face(b["face"]), self._face(b.get("other")),
                             ("gradcam",) if methods is None else tuple(methods),
                             model=b.get("checkpoint"), viewer=b.get("viewer"))
            return [wire.encode(fa)]
        if kind == "summaries":
            faces = [self._face(r) for r in b["faces"]]
            rows = []
            for i in range(0, len(faces), BATCH_MAX):
                rows += [s.row() for s in eng.summaries(faces[i:i + BATCH_MAX], model=b.get("checkpoint"),
                                                         viewer=b.get("viewer"))]
            return [rows]
        if kind == "mask_effect":
            eff = eng.mask_effect(self._face(b["face"]), wire.read_array(b["masked"]), wire.read_array(b.get("alpha")),
                                  model=b.get("checkpoint"), viewer=b.get("viewer"))
            return [wire.encode(eff)]
        if kind == "model":
            return [eng.load(str(b["spec"]))]
        if kind == "threshold":
            return [eng.threshold(b.get("spec"))]
        raise ValueError(f"unknown request {kind!r}")

    # ---- viewers, statistics, warm-up --------------------------------------------------------
    def viewer(self, event: str, vid: str) -> dict[str, int]:
        """A viewer kernel says hello (loading), ready (drawn) or bye (gone: its uploads' analyses are
        dropped); hello answers how many load ahead of it."""
        if event == "bye":
            self.engine.forget(vid)
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
                "cached": len(an), "cached_bytes": int(getattr(an, "bytes", 0)), "batches": {str(k): v for k, v in sorted(an.batches.items())},
                "max_runs_per_face": max(an.runs.values(), default=0), "faces_run": len(an.runs), "pid": os.getpid(),
                "viewers_with_uploads": len(self.engine.uploads)}

    def warm(self, faces: list[Face], batch: int = 8) -> None:
        """Analyse the gallery in batches, queued like any request (viewers interleave)."""
        t0 = time.monotonic()
        for i in range(0, len(faces), batch):
            futures = [self.submit("face", {"face": f}, f"warm-{i + k}") for k, f in enumerate(faces[i:i + batch])]
            for fut in futures:
                try:
                    fut.result()
                except Exception as exc:  # noqa: BLE001 - a bad gallery file is the viewer's message, later
                    log.warning("warm-up: %s", exc)
            log.info("warm-up: %d / %d gallery faces analysed", min(i + batch, len(faces)), len(faces))
        log.info("warm-up done: %d faces in %.1f s", len(faces), time.monotonic() - t0)

    def _face(self, ref: dict[str, Any] | Face | None) -> Face | None:
        """A wire face reference (size checked from its header), or a ``Face`` the service queued itself,
        shrunk to :attr:`side` either way: no analysis, answer or cache entry holds a larger photo."""
        face = ref if isinstance(ref, Face) else wire.read_face(ref, max_pixels=self.max_pixels)
        return None if face is None else shrunk(face, self.side)


def _plain(exc: BaseException) -> str:
    if isinstance(exc, KeyError):
        return f"missing field {exc.args[0]!r}" if exc.args else "missing field"
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text[:300]


def _error(status: int, text: str, **headers: str) -> JSONResponse:
    return JSONResponse({"error": text}, status_code=status, headers=headers or None)


def create_app(service: AnalysisService, guard: Guard) -> Starlette:
    """The Starlette app over a service; ``guard`` holds its token (``Guard(None)``: open, tests only) and limits."""
    limit = guard.limits.timeout_s

    async def bounded(kind: str, request: Request, work) -> Any:
        """``work()``'s answer within the time bound; every failure one line with its status."""
        try:
            guard.allow(request)
            result = await asyncio.wait_for(work(), limit)
        except Refused as exc:
            return _error(exc.status, exc.message)
        except asyncio.TimeoutError:
            return _error(503, f"no answer within {limit:g} s: the analysis service is busy; try again in a minute")
        except OverflowError as exc:
            return _error(503, f"busy: {exc}", **{"Retry-After": "1"})
        except (ValueError, KeyError, FileNotFoundError, TypeError) as exc:
            return _error(422, _plain(exc))
        except Exception as exc:  # noqa: BLE001 - a model failure is one message, the service lives on
            log.exception("request %s failed", kind)
            return _error(500, f"analysis failed: {_plain(exc)}")
        if isinstance(result, bytes):
            if len(result) > guard.limits.max_answer:
                log.error("request %s: a %d-byte answer refused (limit %d)", kind, len(result), guard.limits.max_answer)
                return _error(507, f"the analysis is {len(result) / 2**20:.0f} MB, over this service's "
                                   f"{guard.limits.max_answer / 2**20:.0f} MB answer limit")
            return Response(result, media_type="application/x-npz")
        return JSONResponse(result)

    def route(kind: str):
        async def endpoint(request: Request) -> Any:
            async def work() -> Any:
                body = await guard.body(request, kind)
                # one face without maps batches with others ("face"); a partner or maps asked: one job ("pair")
                job = ("pair" if body.get("other") or body.get("methods") else "face") if kind == "analyse" else kind
                answer = await asyncio.wrap_future(service.submit(job, body, body.get("id", "")))
                # the viewer's model picker says which models it may add: any file, or the allowlist
                return {**answer, "any_model_path": guard.models.any_path} if kind == "info" else answer
            return await bounded(kind, request, work)
        return endpoint

    async def health(request: Request) -> Any:
        return PlainTextResponse("ok")

    async def queue(request: Request) -> Any:
        async def work() -> Any:
            return service.queue.place(request.query_params.get("id", ""))
        return await bounded("queue", request, work)

    async def stats(request: Request) -> Any:
        async def work() -> Any:
            return service.stats()
        return await bounded("stats", request, work)

    async def viewers(request: Request) -> Any:
        async def work() -> Any:
            body = await guard.body(request, "viewers")
            return service.viewer(body.get("event", "hello"), body.get("id", ""))
        return await bounded("viewers", request, work)

    jobs = RunJobs(service.engine.settings)  # benchmark runs started from the dashboard (child processes)

    async def runs(request: Request) -> Any:
        async def work() -> Any:
            return jobs.start(await guard.body(request, "runs"))
        return await bounded("runs", request, work)

    async def run_status(request: Request) -> Any:
        async def work() -> Any:
            return jobs.status((await guard.body(request, "run_status"))["job"])
        return await bounded("run_status", request, work)

    return Starlette(routes=[
        Route("/health", health), Route("/queue", queue), Route("/stats", stats),
        Route("/viewers", viewers, methods=["POST"]), Route("/runs", runs, methods=["POST"]),
        Route("/run_status", run_status, methods=["POST"]),
        *(Route(f"/{k}", route(k), methods=["POST"]) for k in ("info", "analyse", "summaries", "mask_effect",
                                                                  "model", "threshold")),
    ])
