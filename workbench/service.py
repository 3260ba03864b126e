"""The analysis service: one model process per server, shared by every dashboard viewer.

    python -m workbench.service --port 8867 [--checkpoint M] [--faces DIR] [--threads 2]

``cqa workbench`` starts it next to Voila and hands its URL to the kernels (``CQA_ANALYSIS_URL``),
which then hold only widgets (``workbench.client``). It owns the model, the aligner (MTCNN with the
on-disk ``AlignmentStore``) and one analysis cache keyed by (image hash, alignment, weights), so a
gallery face is analysed once for all viewers.

Built on Starlette + uvicorn: an ASGI app is the smallest standard way to serve a few JSON/binary
routes with a queue behind them, and uvicorn is a maintained server (no hand-made protocol).
Model work runs on one worker thread (torch is not shared between threads); requests wait in a
FIFO queue whose length and each request's place are visible (``/queue?id=``), which is what the
viewers' "busy, N ahead of you" note reads. Single-face requests waiting together run as one
batched forward pass (:data:`BATCH_MAX`); the gallery is warmed in batches at start-up, between
viewer requests. A full queue answers 503 (the client waits and retries). Errors in the input
(a bad image, an unknown method, a missing checkpoint) answer 422 with a one-line message;
tracebacks stay in the service's log.

Routes: ``GET /health``, ``POST /info``, ``POST /analyse``, ``POST /summaries``,
``POST /mask_effect``, ``POST /checkpoint``, ``GET /queue?id=``, ``GET /stats``, ``POST /viewers``
(kernels say hello / ready, for the "N viewers loading ahead of you" note of ``workbench.loading``).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import collections
import hashlib
import logging
import os
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

import numpy as np

log = logging.getLogger("cqa.service")
BATCH_MAX = 16
"""Most single-face requests run in one forward pass."""
MAX_PENDING = 512
"""Requests queued beyond this get 503 (the client retries)."""


@dataclass
class Job:
    kind: str
    body: dict[str, Any]
    rid: str
    future: Future = field(default_factory=Future)


def decode_face(ref: dict[str, Any] | None):
    """A wire face -> what ``analyse`` takes: ``Photo`` (pixels + sha1 of the file) or an array."""
    if ref is None:
        return None
    from cqa_core.data.imageio import decode_image
    from cqa_core.explain.analysis import Photo

    if "file" in ref:
        data = base64.b64decode(ref["file"])
        return Photo(decode_image(data, name=ref.get("name", "<upload>")), hashlib.sha1(data).hexdigest())
    shape = tuple(int(s) for s in ref["shape"])
    arr = np.frombuffer(base64.b64decode(ref["pixels"]), np.uint8)
    if len(shape) != 3 or shape[2] != 3 or arr.size != int(np.prod(shape)):
        raise ValueError(f"pixels do not match the shape {shape}")
    return arr.reshape(shape)


def decode_array(ref: dict[str, Any] | None) -> np.ndarray | None:
    if ref is None:
        return None
    if ref["dtype"] not in ("uint8", "float32", "float64"):
        raise ValueError(f"array dtype {ref['dtype']} is not accepted")
    arr = np.frombuffer(base64.b64decode(ref["data"]), np.dtype(ref["dtype"]))
    return arr.reshape(tuple(int(s) for s in ref["shape"])).copy()


class AnalysisService:
    """The model engine behind a FIFO queue and one worker thread."""

    def __init__(self, checkpoint: str | None = None, threads: int | None = None) -> None:
        from workbench.session import Engine

        self.engine = Engine(checkpoint, threads=threads or min(2, os.cpu_count() or 1), maxsize=256)
        self.pending: collections.OrderedDict[str, Job] = collections.OrderedDict()
        self.cond = threading.Condition()
        self.requests = 0
        self.loading: collections.OrderedDict[str, float] = collections.OrderedDict()  # viewers not drawn yet
        self.worker = threading.Thread(target=self._loop, name="cqa-model", daemon=True)
        self.worker.start()

    # ---- queue -------------------------------------------------------------------------------
    def submit(self, kind: str, body: dict[str, Any]) -> Future:
        rid = str(body.get("id") or f"anon-{time.monotonic_ns()}")
        job = Job(kind, body, rid)
        with self.cond:
            if len(self.pending) >= MAX_PENDING:
                job.future.set_exception(OverflowError(f"{len(self.pending)} requests waiting"))
                return job.future
            self.pending[rid] = job
            self.requests += 1
            self.cond.notify()
        return job.future

    def place(self, rid: str) -> dict[str, int]:
        with self.cond:
            ids = list(self.pending)
        ahead = ids.index(rid) if rid in ids else 0
        return {"ahead": ahead, "pending": len(ids)}

    def _next(self) -> list[Job]:
        """The oldest job, plus every other waiting single-face job (one batch)."""
        with self.cond:
            while not self.pending:
                self.cond.wait()
            first = next(iter(self.pending.values()))
            if first.kind != "face":
                return [first]
            return [j for j in self.pending.values() if j.kind == "face"][:BATCH_MAX]

    def _loop(self) -> None:
        while True:
            jobs = self._next()
            try:
                results = self._run(jobs)
                for job, res in zip(jobs, results, strict=True):
                    job.future.set_result(res)
            except Exception as exc:  # noqa: BLE001 - each job gets the error; the worker lives on
                if len(jobs) > 1:  # one bad face must not fail the batch: run them one by one
                    for job in jobs:
                        self._run_alone(job)
                else:
                    log.warning("%s failed: %s", jobs[0].kind, exc, exc_info=log.isEnabledFor(logging.DEBUG))
                    jobs[0].future.set_exception(exc)
            finally:
                with self.cond:
                    for job in jobs:
                        self.pending.pop(job.rid, None)

    def _run_alone(self, job: Job) -> None:
        try:
            job.future.set_result(self._run([job])[0])
        except Exception as exc:  # noqa: BLE001
            job.future.set_exception(exc)

    # ---- model work (worker thread only) -----------------------------------------------------
    def _run(self, jobs: list[Job]) -> list[Any]:
        from cqa_core.explain.result import encode

        eng = self.engine
        if jobs[0].kind == "face":
            faces = [decode_face(j.body["face"]) for j in jobs]
            aligns = [j.body["face"].get("align", "mtcnn") for j in jobs]
            ckpts = {j.body.get("checkpoint") for j in jobs}
            if len(ckpts) > 1:  # different models: no shared batch
                raise ValueError("mixed checkpoints in one batch")
            out = eng.analyse_many(faces, aligns, checkpoint=ckpts.pop())
            return [encode(fa) for fa in out]
        job = jobs[0]
        b = job.body
        if job.kind == "info":
            return [eng.info()]
        if job.kind == "pair":
            fa = eng.analyse(decode_face(b["face"]), decode_face(b["other"]), tuple(b.get("methods") or ("gradcam",)),
                             b["face"].get("align", "mtcnn"), b["other"].get("align", "mtcnn"), b.get("checkpoint"))
            return [encode(fa)]
        if job.kind == "summaries":
            from workbench.session import summary_of

            refs = b["faces"]
            faces, aligns = [decode_face(r) for r in refs], [r.get("align", "mtcnn") for r in refs]
            out = []
            for i in range(0, len(faces), BATCH_MAX):
                out += eng.analyse_many(faces[i:i + BATCH_MAX], aligns[i:i + BATCH_MAX], b.get("checkpoint"))
            return [[{k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in summary_of(fa)._asdict().items()}
                     for fa in out]]
        if job.kind == "mask_effect":
            eff = eng.mask_effect(decode_face(b["face"]), b["face"].get("align", "mtcnn"), decode_array(b["masked"]),
                                  decode_array(b.get("alpha")))
            return [encode(eff)]
        if job.kind == "checkpoint":
            path = b["path"]
            if not os.path.exists(os.path.expanduser(path)):
                raise FileNotFoundError(f"checkpoint not found: {path}")
            eng.model_for(path)
            return [{"ok": True}]
        raise ValueError(f"unknown request {job.kind!r}")

    def viewer(self, event: str, vid: str) -> dict[str, int]:
        """A viewer kernel says hello (loading) or ready (drawn); hello answers how many load ahead of it."""
        with self.cond:
            if event == "hello":
                self.loading.setdefault(vid, time.monotonic())
                stale = [k for k, t in self.loading.items() if time.monotonic() - t > 300]  # gone without a word
                for k in stale:
                    self.loading.pop(k)
            else:
                self.loading.pop(vid, None)
            ids = list(self.loading)
        return {"ahead": ids.index(vid) if vid in ids else 0, "loading": len(ids)}

    def stats(self) -> dict[str, Any]:
        with self.cond:
            pending = len(self.pending)
        an = self.engine.analyser
        return {"requests": self.requests, "pending": pending, "computed": an.computed, "cached": len(an),
                "batches": {str(k): v for k, v in sorted(an.batches.items())},
                "max_runs_per_face": max(an.runs.values(), default=0), "faces_run": len(an.runs), "pid": os.getpid()}

    def warm(self, paths: list[str], align: str) -> None:
        """Analyse the gallery in batches, queued like any request (viewers interleave)."""
        from workbench.client import face_ref

        t0 = time.monotonic()
        for i in range(0, len(paths), 8):
            futures = [self.submit("face", {"face": face_ref(p, align), "id": f"warm-{i + k}"})
                       for k, p in enumerate(paths[i:i + 8])]
            for fut in futures:
                try:
                    fut.result()
                except Exception as exc:  # noqa: BLE001 - a bad gallery file is the viewer's message, later
                    log.warning("warm-up: %s", exc)
            log.info("warm-up: %d / %d gallery faces analysed", min(i + 8, len(paths)), len(paths))
        log.info("warm-up done: %d faces in %.1f s", len(paths), time.monotonic() - t0)


def create_app(service: AnalysisService):
    """The Starlette app over a service."""
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse, PlainTextResponse, Response
    from starlette.routing import Route

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
        return JSONResponse(service.place(request.query_params.get("id", "")))

    async def stats(request: Request) -> Any:
        return JSONResponse(service.stats())

    async def viewers(request: Request) -> Any:
        body = await request.json()
        return JSONResponse(service.viewer(str(body.get("event", "hello")), str(body.get("id", ""))))

    return Starlette(routes=[
        Route("/health", health), Route("/queue", queue), Route("/stats", stats),
        Route("/viewers", viewers, methods=["POST"]),
        *(Route(f"/{k}", route(k), methods=["POST"]) for k in ("info", "analyse", "summaries", "mask_effect",
                                                                  "checkpoint")),
    ])


def _plain(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text[:300]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m workbench.service", description=__doc__.split("\n\n")[0])
    ap.add_argument("--port", type=int, default=8867)
    ap.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)")
    ap.add_argument("--checkpoint", default=os.environ.get("CQA_CHECKPOINT"))
    ap.add_argument("--faces", default=os.environ.get("CQA_FACES"), help="gallery folder to warm the cache with")
    ap.add_argument("--people", type=int, default=int(os.environ.get("CQA_GALLERY_PEOPLE", "60")))
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: min(2, cores))")
    ap.add_argument("--no-warm", dest="warm", action="store_false", help="do not analyse the gallery at start-up")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s service %(levelname)s %(message)s")
    import uvicorn

    from workbench.session import gallery_align, gallery_paths

    service = AnalysisService(args.checkpoint, args.threads)
    log.info("model: %s (%s)", service.engine.label, service.engine.info()["description"])
    if args.warm:
        paths = [p for _, p in gallery_paths(args.faces, args.people)]
        if paths:
            log.info("warm-up: aligning and analysing %d gallery faces (MTCNN runs once per photo, "
                     "then its landmarks are kept on disk)", len(paths))
            by_align: dict[str, list[str]] = collections.defaultdict(list)
            for p in paths:  # the alignment the viewers' Session.gallery_face will ask for
                by_align[gallery_align(p, os.environ.get("CQA_ALIGN", "mtcnn"))].append(str(p))
            threading.Thread(target=lambda: [service.warm(ps, a) for a, ps in by_align.items()], daemon=True).start()
    uvicorn.run(create_app(service), host=args.host, port=args.port, log_level="warning", access_log=False)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
