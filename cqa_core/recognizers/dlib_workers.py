"""dlib on several cores: worker processes that embed chips sent over pipes.

dlib's ``compute_face_descriptor`` holds the GIL and runs on one core (~80 ms a 150 x 150 chip on
this machine), so threads gain nothing. Each worker is ``python -m cqa_core.recognizers.dlib_workers``
with dlib's network loaded once; a batch is split into contiguous parts, each sent as one ``.npy``
message (8-byte length, then the bytes), and the (n, 128) answers are read back in order: the same
numbers as one process, in half the time on 2 cores. Plain subprocesses rather than
``multiprocessing``: a spawned child would re-run the user's unguarded main script.
"""

from __future__ import annotations

import atexit
import io
import struct
import subprocess
import sys
import threading
from typing import BinaryIO

import numpy as np

from cqa_core.recognizers.base import RecognizerError
from cqa_core.recognizers.dlib_net import embed_chips


def _send(pipe: BinaryIO, array: np.ndarray) -> None:
    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=False)
    pipe.write(struct.pack("<Q", buf.tell()) + buf.getvalue())
    pipe.flush()


def _receive(pipe: BinaryIO) -> np.ndarray | None:
    head = pipe.read(8)
    if len(head) < 8:
        return None  # the other side closed the pipe
    (size,) = struct.unpack("<Q", head)
    return np.load(io.BytesIO(pipe.read(size)), allow_pickle=False)


class Workers:
    """``n`` dlib worker processes, started on first use and stopped at exit."""

    def __init__(self, n: int) -> None:
        self.n, self.procs, self.lock = n, [], threading.Lock()

    def _start(self) -> list[subprocess.Popen]:
        if not self.procs:
            self.procs = [subprocess.Popen([sys.executable, "-m", __name__], stdin=subprocess.PIPE,
                                           stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
                          for _ in range(self.n)]
            atexit.register(self.close)
        return self.procs

    def embed(self, chips: np.ndarray) -> np.ndarray:
        """(N, 128) descriptors of (N, 150, 150, 3) uint8 chips, split over the workers."""
        with self.lock:  # one batch at a time: the answers come back in the order the parts went
            procs = self._start()
            parts = np.array_split(np.ascontiguousarray(chips, np.uint8), len(procs))  # n x (~N/n, 150, 150, 3)
            try:
                for p, part in zip(procs, parts, strict=True):
                    _send(p.stdin, part)
                out = [_receive(p.stdout) for p in procs]
            except (BrokenPipeError, OSError) as exc:
                self.close()
                raise RecognizerError(f"a dlib worker process stopped ({exc}); it restarts on the next call") from exc
            if any(o is None for o in out):
                self.close()
                raise RecognizerError("a dlib worker process stopped; it restarts on the next call")
            return np.concatenate(out)  # (N, 128)

    def close(self) -> None:
        for p in self.procs:
            if p.stdin:
                p.stdin.close()
            p.wait(timeout=10)
        self.procs = []


def main() -> None:
    """Worker loop: chips in, descriptors out, until stdin closes."""
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    while (chips := _receive(stdin)) is not None:
        _send(stdout, embed_chips(chips))


if __name__ == "__main__":
    main()
