"""``cqa workbench`` serves the Voila dashboard; ``--terminal`` keeps the text demo."""

from pathlib import Path

import numpy as np
from PIL import Image

from cqa_core.cli import main


def test_workbench_terminal_demo_on_a_photo(tmp_path, capsys):
    rng = np.random.default_rng(0)
    photo = tmp_path / "face.jpg"
    Image.fromarray(rng.integers(0, 255, (250, 250, 3), dtype=np.uint8)).save(photo)
    assert main(["workbench", "--terminal", str(photo)]) == 0
    out = capsys.readouterr().out
    assert "model: default model, stem light, b=4" in out  # the bundled weights, named
    assert all(f"branch {i} q=" in out for i in range(4))
    assert "CAL penalty" in out


def test_workbench_terminal_missing_file_is_a_clear_error(tmp_path, capsys):
    assert main(["workbench", "--terminal", str(tmp_path / "nope.jpg")]) == 2
    assert "nope.jpg" in capsys.readouterr().err


class FakePopen:
    """Records how Voila would be started; exits at once."""

    calls: list = []

    def __init__(self, cmd, cwd=None, env=None, **kwargs):
        FakePopen.calls.append((cmd, cwd, env))

    def wait(self, timeout=None):
        return 0


class FakeSupervisor:
    """Records how the analysis service would be started and watched."""

    made: list = []

    def __init__(self, cmd, env, url):
        FakeSupervisor.made.append(self)
        self.cmd, self.env, self.url, self.started, self.stopped = cmd, env, url, False, False

    def start(self):
        self.started = True

    def stop(self):
        self.stopped = True


def test_workbench_serves_voila_with_the_settings(tmp_path, monkeypatch, capsys):
    import workbench.serve as serve

    FakePopen.calls.clear()
    FakeSupervisor.made.clear()
    monkeypatch.setattr(serve.subprocess, "Popen", FakePopen)
    monkeypatch.setattr(serve, "Supervisor", FakeSupervisor)
    monkeypatch.delenv("CQA_CHECKPOINT", raising=False)
    monkeypatch.delenv("CQA_ANALYSIS_URL", raising=False)
    for var in ("CQA_TOKEN", "CQA_SERVICE_TOKEN", "JUPYTER_TOKEN"):
        monkeypatch.delenv(var, raising=False)
    assert main(["workbench", "--faces", str(tmp_path), "--port", "8899", "--service-port", "8898"]) == 0
    # first the analysis service (one model process), watched and stopped with Voila
    (sup,) = FakeSupervisor.made
    assert sup.started and sup.stopped and sup.url == "http://127.0.0.1:8898"
    assert sup.cmd[1:3] == ["-m", "workbench.service"] and "--port=8898" in sup.cmd
    assert f"--faces={tmp_path.resolve()}" in sup.cmd
    (cmd, cwd, env), = FakePopen.calls
    assert cmd[1:3] == ["-m", "workbench.voila_server"] and str(serve.NOTEBOOK) in cmd
    for flag in ("--port=8899", "--no-browser", "--template=cqa", "--strip_sources=True", "--show_tracebacks=False",
                 "--preheat_kernel=True", f"--Voila.config_file_paths={serve.DASHBOARD_DIR}",
                 "--Voila.ip=127.0.0.1", "--Voila.base_url=/", "--Voila.auto_token=True"):
        assert flag in cmd
    # the kernels talk to that service, and Voila finds our template in the package
    assert env["CQA_ANALYSIS_URL"] == "http://127.0.0.1:8898"
    assert str(serve.DASHBOARD_DIR) in env["JUPYTER_PATH"].split(":")
    assert (serve.DASHBOARD_DIR / "voila" / "templates" / "cqa" / "spinner.macro.html.j2").is_file()
    # package data, so an installed wheel serves from any folder: no dependence on the caller's cwd
    assert serve.NOTEBOOK.is_file() and (serve.DASHBOARD_DIR / "voila.json").is_file()
    assert serve.DASHBOARD_DIR.parent == Path(serve.__file__).resolve().parent
    assert cwd is None
    assert env["CQA_FACES"] == str(tmp_path.resolve())
    assert "CQA_CHECKPOINT" not in env
    # a login by default, even on loopback: a token made at start, printed in the URL, given to Voila only
    token = env["JUPYTER_TOKEN"]
    assert len(token) >= 30 and f"http://localhost:8899/?token={token}" in capsys.readouterr().out
    assert not any(token in part for part in cmd) and "CQA_TOKEN" not in env
    # the service's own token reaches the service and the kernels through the environment
    assert env["CQA_SERVICE_TOKEN"] == sup.env["CQA_SERVICE_TOKEN"] and len(env["CQA_SERVICE_TOKEN"]) >= 40


def test_the_model_travels_as_one_flag_and_kernels_get_only_what_they_use(tmp_path, monkeypatch, capsys):
    """``--checkpoint`` (deprecated, one note) = ``--model``: the service gets it as ``--model=``, and
    neither the service's nor any kernel's environment carries it; the cache root is the service's only."""
    import workbench.serve as serve

    FakePopen.calls.clear()
    FakeSupervisor.made.clear()
    monkeypatch.setattr(serve.subprocess, "Popen", FakePopen)
    monkeypatch.setattr(serve, "Supervisor", FakeSupervisor)
    for var in ("CQA_CHECKPOINT", "CQA_ANALYSIS_URL", "CQA_TOKEN", "CQA_SERVICE_TOKEN", "JUPYTER_TOKEN"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("CQA_CACHE", str(tmp_path / "cache"))
    weights = tmp_path / "m.safetensors"
    weights.write_bytes(b"not read here")
    assert main(["workbench", "--faces", str(tmp_path), "--checkpoint", str(weights), "--service-port", "8897"]) == 0
    assert capsys.readouterr().err.count("--checkpoint is deprecated; use --model") == 1
    (sup,) = FakeSupervisor.made
    (_, _, env), = FakePopen.calls
    assert f"--model={weights.resolve()}" in sup.cmd and not any("--checkpoint" in c for c in sup.cmd)
    assert "CQA_CHECKPOINT" not in sup.env and "CQA_CHECKPOINT" not in env
    assert sup.env["CQA_CACHE"] == str(tmp_path / "cache") and "CQA_CACHE" not in env
    assert "CQA_TORCH_THREADS" not in env and env["CQA_FACES"] == str(tmp_path.resolve())


def test_workbench_uses_a_service_running_elsewhere(tmp_path, monkeypatch, capsys):
    import workbench.serve as serve

    FakePopen.calls.clear()
    FakeSupervisor.made.clear()
    monkeypatch.setattr(serve.subprocess, "Popen", FakePopen)
    monkeypatch.setattr(serve, "Supervisor", FakeSupervisor)
    waited = []
    monkeypatch.setattr(serve, "wait_ready", lambda url, proc=None, timeout=0, token=None: waited.append((url, token)))
    monkeypatch.delenv("CQA_SERVICE_TOKEN", raising=False)
    argv = ["workbench", "--service", "http://gpu-box:8867/", "--port", "8899", "--pool", "3",
            "--refill-after", "90"]
    assert main(argv) == 2  # a remote service needs its token
    assert "needs that service's token: set CQA_SERVICE_TOKEN" in capsys.readouterr().err
    monkeypatch.setenv("CQA_SERVICE_TOKEN", "gpu-box-secret")
    assert main(argv) == 0
    assert FakeSupervisor.made == [] and waited == [("http://gpu-box:8867", "gpu-box-secret")]  # none started here
    (cmd, cwd, env), = FakePopen.calls
    assert env["CQA_ANALYSIS_URL"] == "http://gpu-box:8867" and env["CQA_SERVICE_TOKEN"] == "gpu-box-secret"
    assert "--VoilaConfiguration.default_pool_size=3" in cmd and "--VoilaKernelManager.fill_delay=90.0" in cmd


def test_workbench_bad_faces_folder_is_a_clear_error(tmp_path, capsys):
    assert main(["workbench", "--faces", str(tmp_path / "missing")]) == 2
    assert "no such folder" in capsys.readouterr().err


def test_workbench_image_needs_terminal(tmp_path, capsys):
    assert main(["workbench", str(tmp_path / "x.jpg")]) == 2
    assert "--terminal" in capsys.readouterr().err
