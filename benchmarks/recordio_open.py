"""Opening a 1M-record RecordIO: from its ``.idx`` vs a scan without one (issue 14, item 4).

Writes a synthetic insightface-layout ``train.rec`` / ``train.idx`` in a temporary directory
(header record 0, ``--n`` tiny image records, ``--classes`` identity records; each image payload
is 8 bytes, so the file is ~40 MB) and times, best of ``--repeats``, in CPU seconds of this
process (``time.process_time``: other jobs on a shared machine do not distort it):

* ``idx``  - ``RecordIODataset(prefix)`` with the index: parse ``.idx``, read record 0;
* ``scan`` - the same ``.rec`` without its ``.idx``: one pass over the frame headers;
* ``all headers`` - what opening did before issue 14 on an index-less layout: read and unpack
  every record through the index (for reference).

    .venv/bin/python benchmarks/recordio_open.py [--n 1000000] [--classes 10000]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from cqa_core.data.recordfile import IRHeader, RecordReader, RecordWriter, pack, unpack
from cqa_core.data.recordio import RecordIODataset


def write(prefix: Path, n: int, classes: int) -> None:
    """insightface layout: images 1..n in ``classes`` equal runs, identity records after them."""
    first = n + 1
    bounds = np.linspace(1, n + 1, classes + 1).astype(int)  # (classes + 1,) run starts
    with RecordWriter(prefix) as w:
        w.write(0, pack(IRHeader(0, np.array([first, first + classes], np.float32), 0, 0), b""))
        c = 0
        for key in range(1, n + 1):
            while key >= bounds[c + 1]:
                c += 1
            w.write(key, pack(IRHeader(0, float(c), key, 0), b"JPEGDATA"))
        for c in range(classes):
            w.write(first + c, pack(IRHeader(0, np.array(bounds[c:c + 2], np.float32), 0, 0), b""))


def best(fn: Callable[[], object], repeats: int) -> float:
    """Fewest CPU seconds of ``repeats`` calls."""
    times = []
    for _ in range(repeats):
        t = time.process_time()
        fn()
        times.append(time.process_time() - t)
    return min(times)


def read_all_headers(prefix: Path) -> int:
    r = RecordReader(prefix)
    return sum(unpack(r.read(k))[0].flag for k in r.keys())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--classes", type=int, default=10_000)
    ap.add_argument("--repeats", type=int, default=3)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        prefix, bare = Path(tmp) / "train", Path(tmp) / "bare"
        t = time.perf_counter()
        write(prefix, a.n, a.classes)
        os.link(f"{prefix}.rec", f"{bare}.rec")  # the same records, no .idx beside them
        size = os.path.getsize(f"{prefix}.rec") / 1e6
        print(f"wrote {a.n + a.classes + 1:,} records ({size:.1f} MB) in {time.perf_counter() - t:.1f} s")
        ds = RecordIODataset(prefix)
        assert len(ds) == a.n and ds.num_classes == a.classes and len(RecordIODataset(bare)) == a.n
        t_idx = best(lambda: RecordIODataset(prefix), a.repeats)
        t_scan = best(lambda: RecordIODataset(bare), a.repeats)
        t_all = best(lambda: read_all_headers(prefix), 1)
    print(f"open with .idx       {t_idx:8.3f} s")
    print(f"open by scan         {t_scan:8.3f} s   ratio scan / idx = {t_scan / t_idx:.1f}x")
    print(f"read every header    {t_all:8.3f} s   ratio / idx = {t_all / t_idx:.1f}x (pre-issue-14 open)")


if __name__ == "__main__":
    main()
