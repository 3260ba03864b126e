"""Every notebook in notebooks/ runs headless on CPU (nbclient) and is stored without outputs."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from cqa_core.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
LFW = Settings.from_env().lfw


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_is_stored_without_outputs(path):
    import nbformat

    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert not cell.outputs and cell.execution_count is None, f"{path.name}: clear outputs before committing"


@pytest.mark.slow
@pytest.mark.data
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_executes(path, monkeypatch, tmp_path):
    import nbformat
    from nbclient import NotebookClient

    if not LFW.is_dir():
        pytest.skip(f"LFW not found at {LFW} (set CQA_DATA)")
    monkeypatch.delenv("CQA_CHECKPOINT", raising=False)
    monkeypatch.delenv("CQA_FACES", raising=False)
    monkeypatch.setenv("CQA_GALLERY_PEOPLE", "12")
    monkeypatch.setenv("CQA_TORCH_THREADS", "1")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.setenv("CQA_NOTEBOOK_PAIRS", "40")  # 09_where_it_fails: 40 LFW pairs per run
    monkeypatch.setenv("CQA_RUNS", str(tmp_path / "runs"))  # its run folders
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(nb, timeout=300, kernel_name="python3",
                            resources={"metadata": {"path": str(path.parent)}})
    t0 = time.perf_counter()
    client.execute()
    print(f"{path.name}: {time.perf_counter() - t0:.1f} s")
