"""Jobs of the analysis service: one FIFO queue, one worker thread, single-face jobs batched.

Model work runs on one worker thread (torch is not shared between threads). Requests wait in a
FIFO queue whose length and each request's place are visible (:meth:`JobQueue.place`), which is
what the viewers' "busy, N ahead of you" note reads. Single-face jobs waiting together run as one
batch (:data:`BATCH_MAX`): the ``run`` callback gets them all at once. A full queue refuses new
jobs (``OverflowError``; the route answers 503 and the client retries). One bad face never fails
a batch: the batch is re-run face by face and each job gets its own answer or error.

Each job's key is assigned here (a counter), never taken from the request: a client's ``id`` is
only a *tag* for :meth:`JobQueue.place`, so a retry or two requests with one id are separate jobs,
each answered. A job whose caller gave up before it started (its future cancelled: the route's
time bound) is dropped unrun; once started, a job can no longer be cancelled and always finishes.
"""

from __future__ import annotations

import collections
import itertools
import logging
import threading
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger("cqa.service")
BATCH_MAX = 16
"""Most single-face jobs run in one forward pass."""
MAX_PENDING = 512
"""Jobs queued beyond this are refused (503; the client retries)."""
BATCHED = "face"
"""The job kind that is batched."""


@dataclass
class Job:
    kind: str
    body: dict[str, Any]
    rid: int  # the queue's own key
    tag: str = ""  # the client's id, for place() only
    future: Future = field(default_factory=Future)


class JobQueue:
    """FIFO jobs run by ``run(jobs) -> results`` (one result per job) on one worker thread."""

    def __init__(self, run: Callable[[list[Job]], list[Any]]) -> None:
        self.run = run
        self.pending: collections.OrderedDict[int, Job] = collections.OrderedDict()
        self.cond = threading.Condition()
        self.requests = 0
        self._ids = itertools.count(1)
        self.worker = threading.Thread(target=self._loop, name="cqa-model", daemon=True)
        self.worker.start()

    def submit(self, kind: str, body: dict[str, Any], tag: str = "") -> Future:
        """Queue a job; its future gets the result. ``tag`` (the client's id) only names it for place()."""
        with self.cond:
            job = Job(kind, body, next(self._ids), str(tag)[:64])
            if len(self.pending) >= MAX_PENDING:
                job.future.set_exception(OverflowError(f"{len(self.pending)} requests waiting"))
                return job.future
            self.pending[job.rid] = job
            self.requests += 1
            self.cond.notify()
        return job.future

    def place(self, tag: str) -> dict[str, int]:
        """How many jobs wait ahead of the first job tagged ``tag``, and in all."""
        with self.cond:
            tags = [j.tag for j in self.pending.values()]
        return {"ahead": tags.index(tag) if tag and tag in tags else 0, "pending": len(tags)}

    def __len__(self) -> int:
        with self.cond:
            return len(self.pending)

    def _next(self) -> list[Job]:
        """The oldest job, plus every other waiting single-face job (one batch); all marked running."""
        with self.cond:
            while True:
                while not self.pending:
                    self.cond.wait()
                first = next(iter(self.pending.values()))
                chosen = [first] if first.kind != BATCHED else \
                    [j for j in self.pending.values() if j.kind == BATCHED][:BATCH_MAX]
                jobs = [j for j in chosen if j.future.set_running_or_notify_cancel()]  # False: cancelled
                for j in chosen:
                    if j.future.cancelled():
                        self.pending.pop(j.rid, None)
                if jobs:
                    return jobs

    def _loop(self) -> None:
        while True:
            jobs = self._next()
            try:
                for job, res in zip(jobs, self.run(jobs), strict=True):
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
        if job.future.done():  # answered by the batch before it failed
            return
        try:
            job.future.set_result(self.run([job])[0])
        except Exception as exc:  # noqa: BLE001
            job.future.set_exception(exc)
