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
    assert list(engine.thresholds.procs.values())[0].returncode == 0
    from workbench.service.engine import Engine

    later = Engine(engine.settings)  # the next start: another model object with the same weights
    assert later.default is not engine.default  # another object, the same weights' digest ...
    assert later.threshold() == result and later.thresholds.procs == {}  # ... the file is found: no process
    later.close()


def test_no_lfw_is_unavailable_not_an_error(tmp_path):
    from workbench.service.engine import Engine

    engine = Engine(Settings(data_root=tmp_path, cache_root=tmp_path / "cache"))
    got = engine.threshold()
    assert set(got) == {"unavailable"} and "no verdict" in got["unavailable"], got
    assert engine.thresholds.procs == {}


def test_close_ends_a_computation_that_is_still_running(engine_on_small_lfw):
    engine = engine_on_small_lfw
    assert "computing" in engine.threshold()
    proc = next(iter(engine.thresholds.procs.values()))
    engine.close()
    assert proc.poll() is not None  # terminated, and waited for
    assert not threshold_path(engine.default, engine.settings.cache_root).exists()


def test_the_child_gets_the_weights_and_their_digest_not_the_settings(tmp_path, monkeypatch):
    """No ``CQA_*`` variable (a token among them) reaches the child; it is told the weights, their
    digest, where to write and the two folders it reads and fills."""
    from cqa_core.evaluation import threshold

    seen = {}

    class Popen:
        def __init__(self, cmd, env, **kw):
            seen.update(cmd=cmd, env=env)

    monkeypatch.setenv("CQA_SERVICE_TOKEN", "secret")
    monkeypatch.setenv("CQA_CHECKPOINT", str(tmp_path / "other.safetensors"))
    monkeypatch.setattr(threshold.subprocess, "Popen", Popen)
    jobs = threshold.Thresholds(tmp_path / "lfw", tmp_path / "cache")
    jobs.start("/w/model.safetensors", "abc123", tmp_path / "cache" / "thresholds" / "t.json")
    assert seen["cmd"][3:] == ["/w/model.safetensors", "--digest", "abc123", "--out",
                               str(tmp_path / "cache" / "thresholds" / "t.json"),
                               "--lfw", str(tmp_path / "lfw"), "--cache", str(tmp_path / "cache")]
    assert not [k for k in seen["env"] if k.startswith("CQA_")]


def test_the_child_refuses_weights_that_are_not_the_ones_asked_for(tmp_path):
    from cqa_core.checkpoint import DEFAULT_WEIGHTS
    from cqa_core.evaluation.threshold import main
    from cqa_core.recognizers.base import RecognizerError

    if not DEFAULT_WEIGHTS.exists():
        pytest.skip("no bundled default weights in this install")
    with pytest.raises(RecognizerError, match="weights changed"):
        main([str(DEFAULT_WEIGHTS), "--digest", "not-its-digest", "--out", str(tmp_path / "t.json"),
              "--lfw", str(tmp_path), "--cache", str(tmp_path)])
    assert not (tmp_path / "t.json").exists()
