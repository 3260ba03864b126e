"""A model's own LFW threshold, computed by the dashboard's engine in a separate process.

A small LFW stand-in (4 same + 4 different pairs of real LFW photos, linked into a temporary data
root) keeps it to seconds: the engine answers "computing" at once, the child process aligns and
embeds the 16 photos, writes the JSON atomically, and the verdict's threshold is the best one on
those pairs. A machine without LFW gets "unavailable"; a process still running ends with the engine.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from cqa_core.evaluation.threshold import PAIRS, threshold_path
from cqa_core.settings import Settings

pytestmark = pytest.mark.data

LFW_NAME = "lfw-deepfunneled"


def small_lfw(src: Path, root: Path, n: int = 4) -> Path:
    """``root/lfw-deepfunneled`` with the first n same and n different pairs of pairsDevTest (photos linked)."""
    lines = (src / PAIRS).read_text().splitlines()[1:]
    same = [ln for ln in lines if len(ln.split()) == 3][:n]
    diff = [ln for ln in lines if len(ln.split()) == 4][:n]
    dst = root / LFW_NAME
    for ln in same + diff:
        f = ln.split()
        for name, idx in ((f[0], f[1]), (f[0], f[2])) if len(f) == 3 else ((f[0], f[1]), (f[2], f[3])):
            photo = f"{name}/{name}_{int(idx):04d}.jpg"
            (dst / name).mkdir(parents=True, exist_ok=True)
            if not (dst / photo).exists():
                (dst / photo).symlink_to(src / photo)
    (dst / PAIRS).write_text(f"{n}\n" + "\n".join(same + diff) + "\n")
    return dst


@pytest.fixture()
def engine_on_small_lfw(lfw_root, tmp_path):
    from workbench.service.engine import Engine

    small_lfw(lfw_root, tmp_path / "data")
    settings = Settings(data_root=tmp_path / "data", cache_root=tmp_path / "cache")
    engine = Engine(settings)
    yield engine
    engine.close()


def test_computed_in_another_process_then_cached(engine_on_small_lfw):
    engine = engine_on_small_lfw
    first = engine.threshold()
    assert set(first) == {"computing"}, first
    t0 = time.perf_counter()
    result = engine.threshold(wait=True)
    print(f"threshold of 8 pairs in {time.perf_counter() - t0:.1f} s: {result}")
    assert result["pairs"] == 8 and result["source"] == f"LFW View 1 {PAIRS}"
    assert 0.5 <= result["accuracy"] <= 1.0 and -1.0 <= result["threshold"] <= 1.0
    path = threshold_path(engine.default, engine.settings.cache_root)
    assert json.loads(path.read_text()) == result  # the child wrote it where the parent reads it
    assert engine.threshold() == result  # cached: no second process
    assert list(engine._thresholds.values())[0].returncode == 0
    from workbench.service.engine import Engine

    later = Engine(engine.settings)  # the next start: another model object with the same weights
    assert later.default.digest != engine.default.digest  # the in-memory key differs ...
    assert later.threshold() == result and later._thresholds == {}  # ... the file is found: no process
    later.close()


def test_no_lfw_is_unavailable_not_an_error(tmp_path):
    from workbench.service.engine import Engine

    engine = Engine(Settings(data_root=tmp_path, cache_root=tmp_path / "cache"))
    got = engine.threshold()
    assert set(got) == {"unavailable"} and "no verdict" in got["unavailable"], got
    assert engine._thresholds == {}


def test_close_ends_a_computation_that_is_still_running(engine_on_small_lfw):
    engine = engine_on_small_lfw
    assert "computing" in engine.threshold()
    proc = next(iter(engine._thresholds.values()))
    engine.close()
    assert proc.poll() is not None  # terminated, and waited for
    assert not threshold_path(engine.default, engine.settings.cache_root).exists()
