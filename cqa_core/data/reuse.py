"""One line on stderr when a long job reuses what an earlier one built.

A second run that reuses a cache is much faster than the first, and without a word a user cannot
tell a reused cache from a rebuilt one, nor where the cache lives or how old it is. Every cache a
long job reuses (aligned crops, the stem-feature cache, a model's LFW threshold, stored embeddings)
says so through :func:`say_reused`, e.g.::

    reusing the stem-feature cache at ~/.cache/cqa-face/features/celeba299-light (6,274 faces x 5 views, 1.2 GB, built 2026-12-06 10:41)

"built" is the modification time of the file that marks the cache complete, in local time.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from pathlib import Path

_said: set[tuple[str, float]] = set()  # (place, built) already announced by this process (once=True)
_lock = threading.Lock()


def home_short(path: str | os.PathLike) -> str:
    """``path`` with the home folder written as ``~`` (``/home/ann/.cache/x`` -> ``~/.cache/x``)."""
    p, home = str(path), str(Path.home())
    return "~" + p[len(home):] if home not in ("", "/") and (p == home or p.startswith(home + os.sep)) else p


def human_bytes(n: float) -> str:
    """Bytes as ``1.2 GB`` (powers of 1,000)."""
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1000:
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1000
    return f"{n:.1f} TB"


def files_size(paths: list[Path]) -> int:
    """Total bytes of the files that exist among ``paths``."""
    return sum(p.stat().st_size for p in paths if p.is_file())


def built_at(path: str | os.PathLike) -> str:
    """The file's modification time as ``2026-12-06 10:41`` (local time)."""
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(Path(path).stat().st_mtime))


def reused_line(what: str, place: str | os.PathLike, details: list[str], built: str | os.PathLike) -> str:
    """``reusing WHAT at PLACE (DETAIL, DETAIL, built DATE)``; ``built`` is the file whose mtime dates it."""
    inside = ", ".join([*details, f"built {built_at(built)}"])
    return f"reusing {what} at {home_short(place)} ({inside})"


def say_reused(what: str, place: str | os.PathLike, details: list[str], built: str | os.PathLike,
               once: bool = False) -> str | None:
    """Print :func:`reused_line` on stderr; return it (None when ``once`` and already said).

    Args:
        what: what is reused, e.g. "the stem-feature cache".
        place: the folder or file it lives in.
        details: short facts about it ("6,274 faces x 5 views", "1.2 GB").
        built: the file whose modification time says when it was built.
        once: say it only the first time this process reuses this place as built then (for a
            cache read at every request, such as a model's threshold in the analysis service).
    """
    if once:
        key = (str(place), Path(built).stat().st_mtime)
        with _lock:
            if key in _said:
                return None
            _said.add(key)
    line = reused_line(what, place, details, built)
    print(line, file=sys.stderr, flush=True)
    return line
