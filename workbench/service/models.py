"""The engine's recognizers: the session's own model, and the others a viewer loads, kept in a small LRU.

A spec is what ``cqa_core.recognizers.load_recognizer`` takes: a registered name ("default",
"dlib", a plug-in's) or a model file. :func:`spec_key` makes one key per model.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path

from cqa_core.recognizers.base import Recognizer
from cqa_core.recognizers.load import load_recognizer, spec_names
from cqa_core.recognizers.registry import DEFAULT

MAX_MODELS = 4
"""Recognizers besides the session's kept loaded at once (least recently used goes first)."""


def spec_key(spec: str | None) -> str:
    """One key per model: a registered name ("default", "dlib", a plug-in's), or a model file's resolved path."""
    text = str(spec or DEFAULT).strip()
    return text if text in spec_names() else str(Path(text).expanduser().resolve())


class Recognizers:
    """The session's model under :data:`DEFAULT`, and up to ``maxsize`` others, each loaded once."""

    def __init__(self, default: Recognizer, load: Callable[[str], Recognizer] = load_recognizer,
                 maxsize: int = MAX_MODELS) -> None:
        self.default, self.load, self.maxsize = default, load, maxsize
        self.others: OrderedDict[str, Recognizer] = OrderedDict()

    def get(self, spec: str | None = None) -> Recognizer:
        """The recognizer ``spec`` names (loaded on first use; LRU-cached by :func:`spec_key`)."""
        key = spec_key(spec)
        if key == DEFAULT:
            return self.default
        if key not in self.others:
            self.others[key] = self.load(key)
            while len(self.others) > self.maxsize:
                self.others.popitem(last=False)
        self.others.move_to_end(key)
        return self.others[key]
