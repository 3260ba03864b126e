"""Each viewer's own analysis cache for the faces it uploads (biometric data: memory only, its own).

A face that arrives as pixels (an upload, or an edit of one) rather than as a gallery file is
analysed in its viewer's cache, never in the shared one, and its alignment is never stored: nothing
of it reaches the disk, no other viewer can hit its entries, and :meth:`UploadCaches.forget` drops
them all when the viewer leaves (a viewer silent for :data:`UPLOAD_IDLE_S` is forgotten too).
"""

from __future__ import annotations

import os
import threading
import time
from collections import OrderedDict

from cqa_core.explain.analysis import Analyser
from cqa_core.explain.result import Photo
from workbench.wire import Face

UPLOADS_PER_VIEWER = 16
"""Analyses (faces and pairs) of one viewer's uploads kept at once (least recently used goes first)."""
MAX_VIEWERS = 64
"""Viewers whose uploads' analyses are kept at once (the longest silent one is forgotten first)."""
UPLOAD_IDLE_S = 1200.0
"""A viewer silent this long is forgotten (a kernel that died without saying bye; Voila culls an
idle kernel after 15 minutes, ``voila.json``)."""


def is_upload(face: Face | None) -> bool:
    """True for a face given as pixels (an upload or an edited face), False for a gallery file."""
    return face is not None and not isinstance(face.source, (str, os.PathLike, Photo))


class UploadCaches:
    """viewer -> (its in-memory ``Analyser``, when it was last heard from)."""

    def __init__(self) -> None:
        self.viewers: OrderedDict[str, tuple[Analyser, float]] = OrderedDict()
        self._lock = threading.Lock()

    def of(self, viewer: str | None) -> Analyser:
        """The viewer's own analysis cache for its uploads: in memory only (no alignment store)."""
        key = viewer or ""
        now = time.monotonic()
        with self._lock:
            for k in [k for k, (_, seen) in self.viewers.items() if now - seen > UPLOAD_IDLE_S]:
                del self.viewers[k]
            analyser = self.viewers.pop(key, (None, 0.0))[0] or Analyser(maxsize=UPLOADS_PER_VIEWER, store=None)
            self.viewers[key] = (analyser, now)
            while len(self.viewers) > MAX_VIEWERS:
                self.viewers.popitem(last=False)
        return analyser

    def forget(self, viewer: str) -> bool:
        """Drop every analysis of the viewer's uploads (the viewer left); True when it had any."""
        with self._lock:
            return self.viewers.pop(viewer or "", None) is not None
