"""The layer contracts (pyproject ``[tool.importlinter]``, docs/architecture.md) hold, and would catch a back-edge."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LINT = [sys.executable, "-c", "import sys; from importlinter.cli import lint_imports_command; sys.exit(lint_imports_command())",
        "--no-cache"]


def _lint(root: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(root)}  # this tree's packages, not the installed ones
    return subprocess.run([*LINT, "--config", str(root / "pyproject.toml")], cwd=root, env=env,
                          capture_output=True, text=True, timeout=300)


def _lint_with(tmp_path: Path, module: str, planted: str) -> subprocess.CompletedProcess:
    """The check on a copy of the tree in which ``module`` (a path) gets a function running ``planted``."""
    for part in ("cqa_core", "workbench"):
        shutil.copytree(ROOT / part, tmp_path / part, ignore=shutil.ignore_patterns("*.safetensors", "__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    path = tmp_path / module
    path.write_text(path.read_text() + f"\n\ndef _planted():\n    {planted}  # noqa\n")
    return _lint(tmp_path)


def test_the_layer_contracts_hold():
    r = _lint(ROOT)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-2000:]
    assert "6 kept, 0 broken" in r.stdout
    assert "ignore_imports" not in (ROOT / "pyproject.toml").read_text()  # no exceptions carved out


def test_a_back_edge_breaks_them(tmp_path):
    """One planted import of a higher layer (the model importing training) breaks the layers."""
    r = _lint_with(tmp_path, "cqa_core/model/heads.py", "from cqa_core.training import trainer")
    assert r.returncode != 0
    assert "cqa_core.model.heads -> cqa_core.training.trainer" in r.stdout


def test_the_workbench_layers_catch_a_viewer_importing_the_service(tmp_path):
    """A view that imports the model host (the in-process engine) breaks the viewer-side contract."""
    r = _lint_with(tmp_path, "workbench/views/face.py", "from workbench.service import engine")
    assert r.returncode != 0
    assert "workbench.views.face -> workbench.service.engine" in r.stdout
