"""Packaging: the wheel carries the weights, the dashboard and its Voila settings, and serves outside the clone.

The slow test does what a new user does: ``python -m build``, a fresh venv in a temporary folder,
``pip install torch==... torchvision==...`` (the Makefile's pins), ``pip install <wheel>[workbench]``,
then ``cqa workbench --faces DIR`` from another folder; the page must come back with the dashboard
rendered by a kernel of that venv. It reuses pip's cache but nothing of the repo's .venv.
"""

from __future__ import annotations

import fnmatch
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from cqa_core.settings import Settings

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
LFW = Settings.from_env().lfw
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def makefile_var(name: str) -> str:
    """The value of ``NAME ?= value`` / ``NAME := value`` in the Makefile."""
    m = re.search(rf"^{name}\s*[?:]?=\s*(.+)$", (ROOT / "Makefile").read_text(), re.M)
    assert m, f"Makefile has no {name}"
    return m.group(1).strip()


def test_dashboard_notebook_has_one_source():
    """notebooks/dashboard.ipynb (for JupyterLab) is a link to the packaged notebook, not a copy."""
    from workbench.serve import NOTEBOOK, VOILA_CONFIG

    link = ROOT / "notebooks" / "dashboard.ipynb"
    assert link.is_symlink(), "notebooks/dashboard.ipynb must stay a symlink to workbench/dashboard/dashboard.ipynb"
    assert link.resolve() == NOTEBOOK == ROOT / "workbench" / "dashboard" / "dashboard.ipynb"
    assert json.loads(VOILA_CONFIG.read_text())["VoilaConfiguration"]["template"] == "cqa"  # our lab-based template
    assert not (ROOT / "voila.json").exists(), "voila.json lives in workbench/dashboard/ (one copy)"


def test_package_data_covers_weights_dashboard_and_voila_settings():
    from workbench.serve import NOTEBOOK, VOILA_CONFIG

    data = PYPROJECT["tool"]["setuptools"]["package-data"]
    shipped = {
        "workbench": [NOTEBOOK.relative_to(ROOT / "workbench"), VOILA_CONFIG.relative_to(ROOT / "workbench"),
                      *(p.relative_to(ROOT / "workbench") for p in (ROOT / "workbench" / "dashboard" / "voila").rglob("*.*"))],
        "cqa_core": [p.relative_to(ROOT / "cqa_core") for p in (ROOT / "cqa_core" / "weights").glob("*.safetensors")],
    }
    assert shipped["cqa_core"], "no bundled weights found under cqa_core/weights"
    for package, files in shipped.items():
        for f in files:
            assert any(fnmatch.fnmatch(str(f), pat) for pat in data.get(package, [])), f"{package}/{f} is not package data"


def test_environment_yml_in_step_with_pyproject_and_makefile():
    import yaml
    from packaging.requirements import Requirement
    from packaging.specifiers import SpecifierSet

    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    conda = [d for d in env["dependencies"] if isinstance(d, str)]
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    python = next(d.split("=", 1)[1] for d in conda if d.startswith("python="))
    assert SpecifierSet(PYPROJECT["project"]["requires-python"]).contains(python + ".0")
    core = {Requirement(r).name: Requirement(r) for r in PYPROJECT["project"]["dependencies"]}
    listed = {Requirement(r).name: Requirement(r) for r in pip if not r.startswith("-")}
    for name, req in listed.items():  # what environment.yml pins separately matches pyproject exactly
        assert name in core and req.specifier == core[name].specifier, f"environment.yml {req} != pyproject {core.get(name)}"
    assert "-e .[dev]" in pip  # the same extra the Makefile installs
    assert '-e ".[dev]"' in (ROOT / "Makefile").read_text()
    # the facenet-pytorch pin in environment.yml's instructions is the Makefile's
    pin = re.search(r"facenet-pytorch==[\d.]+", (ROOT / "Makefile").read_text()).group(0)
    assert pin in (ROOT / "environment.yml").read_text()
    for p in makefile_var("TORCH_PINS").split():  # the Makefile's torch pins satisfy the library's bounds
        r = Requirement(p)
        assert core[r.name].specifier.contains(str(next(iter(r.specifier)).version)), p


def run(cmd: list[str], log: Path, timeout: float, **kwargs) -> None:
    """Run a step of the install; on failure, fail with its last lines of output."""
    t0 = time.perf_counter()
    with open(log, "a") as f:
        f.write(f"\n$ {' '.join(map(str, cmd))}\n")
        f.flush()
        proc = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, timeout=timeout, **kwargs)
    print(f"{Path(cmd[0]).name} {cmd[1:3]}: {time.perf_counter() - t0:.1f} s")
    if proc.returncode:
        tail = "".join(log.read_text().splitlines(keepends=True)[-25:])
        pytest.fail(f"{' '.join(map(str, cmd[:4]))} ... exited {proc.returncode}:\n{tail}")


def clean_env(venv: Path, home: Path) -> dict[str, str]:
    """The environment of a new user's shell with ``venv`` activated: nothing of the repo's .venv."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("CQA_", "PYTHON", "JUPYTER", "VIRTUAL_ENV", "IPYTHON"))}
    path = [p for p in env.get("PATH", "").split(os.pathsep) if p and Path(p).resolve() != Path(sys.prefix, "bin").resolve()]
    env["PATH"] = os.pathsep.join([str(venv / "bin"), *path])
    env["VIRTUAL_ENV"] = str(venv)
    # no user-level kernelspecs or config can point the kernel at another Python
    env["JUPYTER_CONFIG_DIR"] = env["JUPYTER_DATA_DIR"] = str(home / "jupyter")
    env["IPYTHONDIR"] = str(home / "ipython")
    env["CQA_TORCH_THREADS"] = env["OMP_NUM_THREADS"] = "1"
    return env


SMOKE = """
import json, sys
from pathlib import Path
import workbench
from cqa_core.settings import Settings
from workbench.app import TAB_NAMES
from workbench.start import open_workbench

w = open_workbench(Settings(faces=sys.argv[1]))
errors = {"load": w.messages.last_error}
for i, name in enumerate(TAB_NAMES):
    w.tabs.selected_index = i
    errors[name] = w.messages.last_error
print(json.dumps({"workbench": workbench.__file__, "label": w.session.label, "faces": len(w.faces),
                  "current": w.current and w.current.name, "errors": errors}))
"""


def cell_outputs(page: str) -> list[dict]:
    """The cell outputs Voila rendered into the page (``application/vnd.voila.cell-output+json``)."""
    found = re.findall(r'<script type="application/vnd\.voila\.cell-output\+json">(.*?)</script>', page, re.S)
    return [json.loads(s) for s in found]


def fetch(url: str, proc: subprocess.Popen, timeout: float) -> tuple[int, str]:
    """GET ``url`` until it answers (Voila starts in seconds; the page waits for the kernel) or ``proc`` exits."""
    end = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=max(5.0, end - time.monotonic())) as r:
                return r.status, r.read().decode()
        except OSError:
            if proc.poll() is not None:
                raise OSError(f"cqa workbench exited with code {proc.returncode}") from None
            if time.monotonic() > end:
                raise
            time.sleep(0.5)


@pytest.mark.slow
@pytest.mark.data
@pytest.mark.timeout(900)
def test_wheel_installs_in_a_fresh_venv_and_serves_the_dashboard(tmp_path):
    if not LFW.is_dir():
        pytest.skip(f"LFW not found at {LFW} (set CQA_DATA)")
    t_start = time.perf_counter()
    log = tmp_path / "install.log"
    dist, venv, home = tmp_path / "dist", tmp_path / "venv", tmp_path / "home"
    faces, elsewhere = tmp_path / "faces", tmp_path / "elsewhere"
    for d in (home, faces, elsewhere):
        d.mkdir()
    for person in ("AJ_Cook", "Aaron_Eckhart", "Abel_Pacheco"):  # a user's own folder: a few flat photos
        photo = sorted((LFW / person).glob("*.jpg"))[0]
        shutil.copy(photo, faces / photo.name)
    try:
        # 1. python -m build: sdist, then the wheel built from it (nothing stale from the tree)
        run([sys.executable, "-m", "build", "--outdir", str(dist), str(ROOT)], log, 300)
        wheel, = dist.glob("cqa_face-*.whl")
        # 2. a fresh venv outside the repo: torch at the Makefile's pins, then the wheel's workbench extra
        env = clean_env(venv, home)
        run([sys.executable, "-m", "venv", str(venv)], log, 120, env=env)
        pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet"]
        run([*pip, *makefile_var("TORCH_PINS").split()], log, 600, env=env, cwd=elsewhere)
        run([*pip, f"{wheel}[workbench]"], log, 600, env=env, cwd=elsewhere)
        # 3. every tab renders from the installed package with its declared dependencies only
        smoke = subprocess.run([str(venv / "bin" / "python"), "-c", SMOKE, str(faces)], cwd=elsewhere, env=env,
                               capture_output=True, text=True, timeout=300)
        assert smoke.returncode == 0, smoke.stderr[-3000:]
        info = json.loads(smoke.stdout.strip().splitlines()[-1])
        assert Path(info["workbench"]).is_relative_to(venv), info["workbench"]  # not the clone's package
        assert info["label"] == "default model" and info["faces"] == 3 and info["current"], info
        assert not any(info["errors"].values()), info["errors"]
        # 4. cqa workbench --faces DIR from another folder serves the page, rendered by a kernel
        port = _free_port()
        t_serve = time.perf_counter()
        with open(tmp_path / "serve.log", "w") as out:  # a login by default: the token from CQA_TOKEN
            proc = subprocess.Popen([str(venv / "bin" / "cqa"), "workbench", "--faces", "../faces", "--port", str(port)],
                                    cwd=elsewhere, env={**env, "CQA_TOKEN": "packaging-test-token"}, stdout=out,
                                    stderr=subprocess.STDOUT, start_new_session=True)
        try:
            status, page = fetch(f"http://127.0.0.1:{port}/?token=packaging-test-token", proc, timeout=240)
        except OSError as exc:
            pytest.fail(f"cqa workbench did not serve ({exc}):\n{(tmp_path / 'serve.log').read_text()[-3000:]}")
        finally:
            stop(proc)
        print(f"serve -> page: {time.perf_counter() - t_serve:.1f} s; whole test {time.perf_counter() - t_start:.0f} s")
        served = (tmp_path / "serve.log").read_text()
        assert status == 200
        assert str(venv) in served, served[-2000:]  # Voila of the fresh venv served it
        assert "There was an error when executing cell" not in page, served[-3000:]
        views = [o for o in cell_outputs(page) if "application/vnd.jupyter.widget-view+json" in o.get("data", {})]
        assert views, f"no dashboard widget in the page:\n{page[-2000:]}"
        assert "CQA-Face Workbench" in views[0]["data"]["text/plain"]
        assert "model: default" in views[0]["data"]["text/plain"]  # the wheel's bundled weights
    finally:
        shutil.rmtree(venv, ignore_errors=True)  # ~6 GB (torch with its CUDA libraries)


def _free_port() -> int:
    from workbench.serve import free_port

    return free_port()


def stop(proc: subprocess.Popen) -> None:
    """SIGTERM ``cqa workbench`` (it stops Voila, which shuts its kernels down), then SIGKILL."""
    for sig, wait in ((signal.SIGTERM, 30), (signal.SIGKILL, 10)):
        try:
            os.killpg(proc.pid, sig)
            proc.wait(timeout=wait)
            return
        except ProcessLookupError:
            return
        except subprocess.TimeoutExpired:
            continue
