"""The documentation site builds with ``mkdocs build --strict`` and the README stays a front door.

The build runs without executing the notebooks (``CQA_DOCS_EXECUTE`` unset: tests/test_notebooks.py
runs them); a broken link, a page missing from the nav or an unreadable docstring is a warning,
which --strict turns into a failure. The commands shown on the pages are checked by
tests/test_readme_commands.py.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"


def test_the_site_builds_strict(tmp_path):
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    env.pop("CQA_DOCS_EXECUTE", None)
    site = tmp_path / "site"
    t0 = time.perf_counter()
    run = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(ROOT / "mkdocs.yml"),
                          "-d", str(site)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    print(f"mkdocs build --strict: {time.perf_counter() - t0:.1f} s")
    assert run.returncode == 0, run.stderr[-4000:]
    for page in ("index.html", "install/index.html", "workbench/index.html", "model_card/index.html",
                 "benchmarks/index.html", "results/index.html", "api/explain/index.html",
                 "notebooks/00_quickstart/index.html", "notebooks/08_cqa_on_your_backbone/index.html"):
        assert (site / page).is_file(), page
    api = (site / "api/explain/index.html").read_text()
    assert "cqa_core.explain.analysis" in api and "FaceAnalysis" in api  # rendered from the docstrings
    notebook = (site / "notebooks/00_quickstart/index.html").read_text()
    assert "analyse(model, faces[0].source)" in notebook  # the cells are on the page
    assert not (site / "notebooks/dashboard/index.html").exists()  # the Voila app is not a page


def test_the_readme_is_one_page():
    lines = README.read_text().splitlines()
    assert len(lines) < 150, len(lines)


def test_every_file_the_readme_links_exists():
    text = README.read_text()
    targets = re.findall(r"!?\[[^\]]*\]\(([^)\s]+)\)", text)
    local = [t.split("#", 1)[0] for t in targets if not re.match(r"[a-z]+:", t) and not t.startswith("#")]
    assert any(t.startswith("docs/images/") for t in local) and any(t.endswith(".md") for t in local), local
    missing = [t for t in local if not (ROOT / t).exists()]
    assert not missing, f"README.md links to files that do not exist: {missing}"
