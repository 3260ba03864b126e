"""Where the project finds shared data and caches (env vars win over defaults)."""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent


def shared_data() -> Path:
    """The shared face data: env ``CQA_DATA``, else ``<repo>/../shared/data``."""
    return Path(os.environ.get("CQA_DATA", REPO_ROOT.parent / "shared" / "data"))
