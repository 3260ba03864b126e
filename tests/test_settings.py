"""Settings are read once: flags over environment over defaults, and no other file reads a CQA_* variable."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from cqa_core.settings import ENV, AlignMode, Settings

ROOT = Path(__file__).resolve().parents[1]
READ = re.compile(r"""(?:environ\.get|getenv|environ\[)\(?\s*["'](CQA_\w+)["']""")


def test_flags_beat_the_environment_which_beats_the_defaults(tmp_path):
    env = {"CQA_CHECKPOINT": "/env/model.safetensors", "CQA_GALLERY_PEOPLE": "7", "CQA_ALIGN": "center",
           "CQA_DEBUG": "yes", "CQA_ANALYSIS_URL": "http://box:8867/"}
    s = Settings.from_env(env)
    assert (s.checkpoint, s.people, s.align, s.debug, s.service_url) == (
        "/env/model.safetensors", 7, AlignMode.CENTER, True, "http://box:8867")
    s = Settings.from_env(env, checkpoint=str(tmp_path / "flag.safetensors"), people=None, align="mtcnn")
    assert s.checkpoint == str(tmp_path / "flag.safetensors") and s.people == 7 and s.align is AlignMode.MTCNN
    d = Settings.from_env({})
    assert (d.checkpoint, d.people, d.align, d.debug, d.service_url) == (None, 60, AlignMode.MTCNN, False, None)
    assert d.lfw == d.data_root / "lfw-deepfunneled" and d.gallery == d.lfw


def test_settings_travel_to_a_child_process_and_back(tmp_path):
    s = Settings(checkpoint=str(tmp_path / "m.safetensors"), faces=tmp_path, people=12, align="center", debug=True)
    env = s.to_env()
    assert env == {"CQA_CHECKPOINT": str(tmp_path / "m.safetensors"), "CQA_FACES": str(tmp_path),
                   "CQA_GALLERY_PEOPLE": "12", "CQA_ALIGN": "center", "CQA_DEBUG": "1"}
    assert Settings.from_env(env) == s


def test_bad_values_are_one_line_errors():
    with pytest.raises(ValueError, match="alignment 'sideways': choose from mtcnn, center"):
        Settings.from_env({"CQA_ALIGN": "sideways"})
    with pytest.raises(ValueError, match="at least 1"):
        Settings(people=0)
    with pytest.raises(TypeError, match="unknown settings: colour"):
        Settings.from_env({}, colour="red")


def _reads() -> dict[str, set[str]]:
    """CQA_* variable -> the files that read it by name (writes such as monkeypatch.setenv do not count)."""
    found: dict[str, set[str]] = {}
    for path in [*ROOT.glob("cqa_core/**/*.py"), *ROOT.glob("workbench/**/*.py"), *ROOT.glob("benchmarks/*.py"),
                 *ROOT.glob("tests/**/*.py"), *ROOT.glob("notebooks/*.ipynb")]:
        if path.name == Path(__file__).name:
            continue
        for var in READ.findall(path.read_text()):
            found.setdefault(var, set()).add(str(path.relative_to(ROOT)))
    return found


def test_each_environment_variable_is_read_in_exactly_one_place():
    reads = _reads()
    assert not {v: files for v, files in reads.items() if v in ENV.values()}, \
        "a Settings variable is read outside cqa_core/settings.py: take it from a Settings instead"
    assert {v: files for v, files in reads.items() if len(files) > 1} == {}
    settings_py = (ROOT / "cqa_core" / "settings.py").read_text()
    assert "env.get(var)" in settings_py and all(f'"{v}"' in settings_py for v in ENV.values())
