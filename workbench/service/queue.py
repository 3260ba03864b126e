"""Jobs of the analysis service: one FIFO queue, one worker thread, single-face jobs batched.

Model work runs on one worker thread (torch is not shared between threads). Requests wait in a
FIFO queue whose length and each request's place are visible (:meth:`JobQueue.place`), which is
what the viewers' "busy, N ahead of you" note reads. Single-face jobs waiting together run as one
batch (:data:`BATCH_MAX`): the ``run`` callback gets them all at once. A full queue refuses new
jobs (``OverflowError``; the route answers 503 and the client retries). One bad face never fails
a batch: the batch is re-run face by face and each job gets its own answer or error.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
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
    rid: str
    future: Future = field(default_factory=Future)


class JobQueue:
    """FIFO jobs run by ``run(jobs) -> results`` (one result per job) on one worker thread."""

    def __init__(self, run: Callable[[list[Job]], list[Any]]) -> None:
        self.run = run
        self.pending: collections.OrderedDict[str, Job] = collections.OrderedDict()
        self.cond = threading.Condition()
        self.requests = 0
        self.worker = threading.Thread(target=self._loop, name="cqa-model", daemon=True)
        self.worker.start()

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
        """How many jobs wait ahead of ``rid``, and in all."""
        with self.cond:
            ids = list(self.pending)
        return {"ahead": ids.index(rid) if rid in ids else 0, "pending": len(ids)}

    def __len__(self) -> int:
        with self.cond:
            return len(self.pending)

    def _next(self) -> list[Job]:
        """The oldest job, plus every other waiting single-face job (one batch)."""
        with self.cond:
            while not self.pending:
                self.cond.wait()
            first = next(iter(self.pending.values()))
            if first.kind != BATCHED:
                return [first]
            return [j for j in self.pending.values() if j.kind == BATCHED][:BATCH_MAX]

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
        try:
            job.future.set_result(self.run([job])[0])
        except Exception as exc:  # noqa: BLE001
            job.future.set_exception(exc)
