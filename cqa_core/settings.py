"""The user's settings, read once: flags and ``CQA_*`` environment variables -> one frozen ``Settings``.

Each entry point builds one (``cqa`` in ``cli.main``, the analysis service's ``__main__``, the
dashboard notebook) and passes it down; nothing else in the project reads a ``CQA_*`` variable.
A flag given on the command line wins over the environment, the environment over the default.

    settings = Settings.from_env(checkpoint=args.checkpoint)   # None flags fall back to the env
    env = settings.to_env()                                    # for a child process (Voila kernels)

| field          | variable              | default                                   |
|----------------|-----------------------|-------------------------------------------|
| checkpoint     | CQA_CHECKPOINT        | the bundled default model                 |
| faces          | CQA_FACES             | LFW: ``people`` people, two photos each   |
| people         | CQA_GALLERY_PEOPLE    | 60                                        |
| align          | CQA_ALIGN             | mtcnn                                     |
| service_url    | CQA_ANALYSIS_URL      | none: the model runs in this process      |
| data_root      | CQA_DATA              | ``<checkout>/../shared/data``             |
| cache_root     | CQA_CACHE             | ``~/.cache/cqa-face``                     |
| debug          | CQA_DEBUG             | off (tracebacks in the dashboard)         |
| torch_threads  | CQA_TORCH_THREADS     | 1 (torch threads of an in-process model)  |
| edc_results    | CQA_EDC_RESULTS       | ``docs/results`` of the checkout          |
| lfw_url        | CQA_LFW_URL           | the LFW mirror of ``data.fetch``          |
| token          | CQA_TOKEN             | generated at start (``cqa workbench``)    |
| service_token  | CQA_SERVICE_TOKEN     | generated at start (the analysis service) |
| models_dir     | CQA_MODELS            | none: the service loads only its model    |
| runs           | CQA_RUNS              | ``runs`` under the cache root             |

The two tokens are secrets: they are left out of ``repr`` (logs, tracebacks).

This module is the lowest layer: it imports nothing of the project.
"""

from __future__ import annotations

import dataclasses
import enum
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

LFW_DIR = "lfw-deepfunneled"
"""LFW deep-funneled's folder name under the data root (``Name/Name_NNNN.jpg`` + the pair lists)."""
DEFAULT_PEOPLE = 60
"""Gallery size when none is set: the first 60 people of the gallery folder (two photos each; workbench.gallery)."""
CHECKOUT = Path(__file__).resolve().parents[1]
"""The folder holding ``cqa_core`` (a source checkout's root)."""

ENV = {
    "checkpoint": "CQA_CHECKPOINT", "faces": "CQA_FACES", "people": "CQA_GALLERY_PEOPLE", "align": "CQA_ALIGN",
    "service_url": "CQA_ANALYSIS_URL", "data_root": "CQA_DATA", "cache_root": "CQA_CACHE", "debug": "CQA_DEBUG",
    "torch_threads": "CQA_TORCH_THREADS", "edc_results": "CQA_EDC_RESULTS", "lfw_url": "CQA_LFW_URL",
    "token": "CQA_TOKEN", "service_token": "CQA_SERVICE_TOKEN", "models_dir": "CQA_MODELS", "runs": "CQA_RUNS",
}
"""Settings field -> the environment variable it is read from."""


class AlignMode(str, enum.Enum):
    """How a photo becomes a 112 x 112 aligned face (``cqa_core.data.align.detector_for`` makes its detector).

    MTCNN: detect 5 landmarks and fit the ArcFace template (stored on disk per photo).
    CENTER: the fixed LFW centre affine, for folders of LFW-framed photos (no detection).
    """

    MTCNN = "mtcnn"
    CENTER = "center"

    @classmethod
    def parse(cls, value: str | AlignMode) -> AlignMode:
        try:
            return cls(value)
        except ValueError:
            raise ValueError(f"alignment {value!r}: choose from {', '.join(m.value for m in cls)}") from None

    def __str__(self) -> str:
        return self.value


def _flag(value: str) -> bool:
    return value.strip().lower() in ("1", "true", "yes", "on")


@dataclass(frozen=True)
class Settings:
    """Everything a user can set from outside (see the module docstring for names and defaults)."""

    checkpoint: str | None = None
    faces: Path | None = None
    people: int = DEFAULT_PEOPLE
    align: AlignMode = AlignMode.MTCNN
    service_url: str | None = None
    data_root: Path = CHECKOUT.parent / "shared" / "data"
    cache_root: Path = Path.home() / ".cache" / "cqa-face"
    debug: bool = False
    torch_threads: int = 1
    edc_results: Path = CHECKOUT / "docs" / "results"
    lfw_url: str | None = None
    token: str | None = field(default=None, repr=False)  # the dashboard's (Voila's) login token
    service_token: str | None = field(default=None, repr=False)  # the analysis service's shared secret
    models_dir: Path | None = None  # model files the analysis service may load besides its own
    runs: Path | None = None  # benchmark run folders the Benchmark tab lists (None: runs_dir's default)

    def __post_init__(self) -> None:  # normalise types once, so every reader gets the same kinds
        fix = object.__setattr__
        fix(self, "align", AlignMode.parse(self.align))
        for name in ("faces", "data_root", "cache_root", "edc_results", "models_dir", "runs"):
            value = getattr(self, name)
            if value is not None:
                fix(self, name, Path(value).expanduser())
        if self.checkpoint is not None:
            fix(self, "checkpoint", str(Path(self.checkpoint).expanduser()))
        if self.service_url:
            fix(self, "service_url", self.service_url.rstrip("/"))
        if int(self.people) < 1:
            raise ValueError(f"gallery size must be at least 1, got {self.people}")
        fix(self, "people", int(self.people))
        fix(self, "torch_threads", max(1, int(self.torch_threads)))

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **flags: Any) -> Settings:
        """Settings from ``environ`` (default ``os.environ``), overridden by the flags that are not None."""
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for name, var in ENV.items():
            raw = env.get(var)
            if raw:
                values[name] = _flag(raw) if name == "debug" else raw
        unknown = set(flags) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise TypeError(f"unknown settings: {', '.join(sorted(unknown))}")
        values.update({k: v for k, v in flags.items() if v is not None})
        return cls(**values)

    def replace(self, **changes: Any) -> Settings:
        """A copy with the given fields changed (None values are ignored)."""
        return dataclasses.replace(self, **{k: v for k, v in changes.items() if v is not None})

    def to_env(self) -> dict[str, str]:
        """The variables a child process needs to build the same Settings (unset fields are left out)."""
        out = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if value is None or value == f.default:
                continue
            out[ENV[f.name]] = ("1" if value else "0") if isinstance(value, bool) else str(value)
        return out

    @property
    def runs_dir(self) -> Path:
        """Where the Benchmark tab finds run folders: ``runs``, else ``runs`` under the cache root."""
        return self.runs if self.runs is not None else self.cache_root / "runs"

    @property
    def lfw(self) -> Path:
        """LFW deep-funneled under the data root."""
        return self.data_root / LFW_DIR

    @property
    def gallery(self) -> Path:
        """The gallery folder: ``faces``, else LFW."""
        return self.faces if self.faces is not None else self.lfw

    def describe_gallery(self) -> str:
        """Where the gallery comes from, in words."""
        if self.faces is not None:
            return f"faces from {self.faces}"
        if not self.lfw.is_dir():
            return "no gallery (upload box only)"
        return f"two photos each of the first {self.people} people with at least two in {self.lfw}"
