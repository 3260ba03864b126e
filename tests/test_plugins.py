"""Plug-ins from outside the repository: a tiny package, "installed" in a temporary folder, adds a
recognizer (``cqa.recognizers``) and a map method (``cqa.methods``) through entry points.

The package is a module plus a ``*.dist-info`` folder (METADATA and entry_points.txt), found by
``importlib.metadata`` on ``PYTHONPATH``: what ``pip install`` leaves in site-packages. Each check
runs in a fresh Python process, as a user's ``cqa`` would. The constant recognizer embeds every
face as the same vector, so any pair's cosine is 1 and its flat map is 0.25 everywhere: answers
worked out by hand.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from cqa_core.plugins import load_plugins

REPO = Path(__file__).resolve().parents[1]
VECTOR = [3.0, 4.0, 0.0, 0.0]
FLAT = 0.25

PLUGIN = f'''
"""A constant recognizer and a flat map method: a plug-in package for tests."""
import numpy as np

from cqa_core.recognizers import register_recognizer
from cqa_core.recognizers.base import Recognizer

VECTOR = np.array({VECTOR}, np.float32)


def embed(chips):
    return np.tile(VECTOR, (len(chips), 1))  # (N, 4): the same for every face


def load(target, options):
    return Recognizer(name="constant", kind="constant", embed_fn=embed, digest="constant-1")


def register():
    register_recognizer(load, names=("constant",), about="constant (a test plug-in)")


def flat(rec, chips, ctx):
    from cqa_core.explain.methods import PairMaps

    s = chips.shape[1]
    return PairMaps(np.full((len(chips), s, s), {FLAT}, np.float32))  # (2, S, S)


def register_methods():
    from cqa_core.explain.methods import Method, Needs, register

    register(Method(name="flat", label="flat", needs=Needs.EMBEDDINGS, about="the same value everywhere", fn=flat))
'''

ENTRY_POINTS = """[cqa.recognizers]
constant = cqa_constant_plugin:register

[cqa.methods]
flat = cqa_constant_plugin:register_methods
"""


@pytest.fixture()
def plugin_path(tmp_path: Path) -> Path:
    """A folder holding the plug-in package as pip would install it."""
    site = tmp_path / "site"
    (site / "cqa_constant_plugin-0.1.dist-info").mkdir(parents=True)
    (site / "cqa_constant_plugin.py").write_text(PLUGIN)
    info = site / "cqa_constant_plugin-0.1.dist-info"
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: cqa-constant-plugin\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(ENTRY_POINTS)
    return site


def run(site: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), str(REPO)]), "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, cwd=REPO, env=env, timeout=300)


def printed(site: Path, code: str) -> list[str]:
    """The lines ``python -c CODE`` prints with the plug-in folder on its path (it must succeed)."""
    proc = run(site, "-c", code)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip().splitlines()


def test_the_recognizer_loads_by_its_name(plugin_path: Path) -> None:
    first, second = printed(plugin_path, "import numpy as np; from cqa_core.recognizers.load import load_recognizer, "
                            "spec_names; r = load_recognizer('constant'); print(r.name, 'constant' in spec_names()); "
                            "print(r.embed(np.zeros((2, 112, 112, 3), np.uint8)).tolist())")
    assert first == "constant True" and json.loads(second) == [VECTOR, VECTOR]


def test_without_the_package_the_name_is_unknown(tmp_path: Path) -> None:
    proc = run(tmp_path, "-c", "from cqa_core.recognizers.load import load_recognizer; load_recognizer('constant')")
    assert proc.returncode != 0 and "model not found: constant" in proc.stderr


def test_the_method_is_listed(plugin_path: Path) -> None:
    proc = run(plugin_path, "-m", "cqa_core.cli", "explain", "--list-methods")
    assert proc.returncode == 0, proc.stderr
    assert any(line.split()[:3] == ["flat", "needs", "embeddings"] for line in proc.stdout.splitlines()), proc.stdout


def test_the_dashboards_model_service_offers_both(plugin_path: Path) -> None:
    """The analysis service lets a viewer pick the plug-in by name and lists its method for it."""
    (line,) = printed(plugin_path, "from cqa_core.settings import Settings; from workbench.service.engine import "
                      "Engine; from workbench.service.guard import Models; e = Engine(Settings()); info = e.load("
                      "'constant'); print(Models().check('constant'), info['spec'], info['kind'], "
                      "[m['name'] for m in info['methods']]); e.close()")
    allowed, spec, kind, names = line.split(" ", 3)
    assert (allowed, spec, kind) == ("constant", "constant", "constant") and "'flat'" in names, line


@pytest.mark.data
def test_cqa_explain_runs_the_plugin_recognizer_with_the_plugin_method(plugin_path: Path, lfw_root: Path,
                                                                        tmp_path: Path) -> None:
    a, b = (lfw_root / "Aaron_Peirsol" / f"Aaron_Peirsol_000{i}.jpg" for i in (1, 2))
    out = tmp_path / "why"
    proc = run(plugin_path, "-m", "cqa_core.cli", "explain", str(a), str(b), "--model", "constant",
               "--methods", "flat", "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    report = json.loads((out / "analysis.json").read_text())
    assert report["model"] == "constant" and report["similarity"] == pytest.approx(1.0)  # the same vector twice
    assert any("flat" in f for f in report["files"]), report["files"]
    assert "constant: wrote" in proc.stdout


def test_a_broken_plugin_is_one_line_and_the_rest_still_loads(tmp_path: Path, monkeypatch) -> None:
    site = tmp_path / "site"
    info = site / "broken_plugin-0.1.dist-info"
    info.mkdir(parents=True)
    (site / "broken_plugin.py").write_text("def register():\n    raise RuntimeError('no GPU\\nhere')\n\n\n"
                                           "def fine():\n    pass\n")
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: broken-plugin\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[cqa.test-group]\nbroken = broken_plugin:register\n"
                                           "missing = no_such_module:register\ngood = broken_plugin:fine\n")
    monkeypatch.syspath_prepend(str(site))
    lines: list[str] = []
    assert load_plugins("cqa.test-group", report=lines.append) == ["good"]
    assert len(lines) == 2 and all(ln.startswith("cqa: plug-in ") and "\n" not in ln for ln in lines)
    assert "cqa: plug-in broken (broken_plugin:register) of cqa.test-group left out: RuntimeError: no GPU here" in lines
    assert load_plugins("cqa.test-group", report=lines.append) == [] and len(lines) == 2  # once per process
