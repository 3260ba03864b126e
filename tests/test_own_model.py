"""Your own model in the dashboard: any model file on a workbench only its owner can open, the allowlist
on a shared one, and a picker that says which.

The guard's rule is checked by hand on files made in tmp_path (the guard never reads them), the
launcher's choice through ``cqa workbench`` with Voila and the service replaced by recorders, and the
whole path once for real: a service started with ``--any-model-path``, a viewer's session over HTTP,
and the picker loading a small CQA-Face checkpoint (two branches, unlike the served model's four).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from cqa_core.cli import main
from cqa_core.settings import Settings
from workbench.access import Access
from workbench.service.__main__ import guard_of, parse
from workbench.service.app import AnalysisService, create_app
from workbench.service.guard import NOT_SERVED, Guard, Models, Refused
from workbench.views.picker import ANY_PATH_HINT, SHARED_HINT

TOKEN = "own-model-test-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def refusal(models: Models, spec: str) -> str:
    with pytest.raises(Refused) as caught:
        models.check(spec)
    assert caught.value.status == 422 and "\n" not in caught.value.message
    return caught.value.message


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    """A model file outside any --models folder, a run folder holding one, a text file, a missing path."""
    (tmp_path / "mine.safetensors").write_bytes(b"weights")
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "model.safetensors").write_bytes(b"weights")
    (tmp_path / "notes.txt").write_text("not a model")
    return {"file": tmp_path / "mine.safetensors", "run": tmp_path / "run", "text": tmp_path / "notes.txt",
            "missing": tmp_path / "missing.onnx"}


# ---- the guard, both ways -----------------------------------------------------------------------
def test_the_owners_workbench_admits_any_existing_model_file(files, tmp_path, monkeypatch):
    own = Models(any_path=True)
    assert own.check(str(files["file"])) == str(files["file"].resolve())
    assert own.check(str(files["run"])) == str(files["run"].resolve() / "model.safetensors")  # the file in a run folder
    assert own.check(str(tmp_path / "run" / ".." / "mine.safetensors")) == str(files["file"].resolve())  # resolved
    monkeypatch.chdir(tmp_path)
    assert own.check("mine.safetensors") == str(files["file"].resolve())  # relative: to the service's folder
    assert own.check("dlib") == "dlib" and own.check(None) is None  # names as before
    # still refused, each in one line naming what was typed
    assert refusal(own, str(files["missing"])) == f"no model file at {files['missing']}"
    assert refusal(own, str(files["text"])).startswith("notes.txt: not a model file the workbench can load (give ")
    assert refusal(own, "").startswith("type a model's path or name")


def test_a_shared_workbench_keeps_the_allowlist_and_names_models_dir(files, tmp_path):
    folder = tmp_path / "models"
    folder.mkdir()
    (folder / "lab.onnx").write_bytes(b"x")
    shared = Models(folder=folder)
    assert shared.check("lab.onnx") == str(folder.resolve() / "lab.onnx")
    for spec in (str(files["file"]), str(files["run"]), str(files["missing"]), "missing.onnx", "../mine.safetensors"):
        assert refusal(shared, spec) == NOT_SERVED, spec  # existing or not: the same answer
    assert "--models DIR" in NOT_SERVED and NOT_SERVED.startswith("this workbench is shared")
    assert refusal(Models(), str(files["file"])) == NOT_SERVED  # no folder at all


class FakeEngine:
    """The engine's methods the routes call here; answers by hand (no model)."""

    settings = Settings()

    def info(self) -> dict:
        return {"label": "fake", "branches": 4}

    def load(self, spec: str) -> dict:
        return {"spec": spec}


@pytest.mark.parametrize("any_path", [True, False])
def test_the_service_says_which_rule_applies_and_applies_it(files, any_path):
    c = TestClient(create_app(AnalysisService(FakeEngine()), Guard(TOKEN, Models(any_path=any_path))))  # type: ignore[arg-type]
    assert c.post("/info", json={}, headers=AUTH).json() == {"label": "fake", "branches": 4, "any_model_path": any_path}
    r = c.post("/model", json={"spec": str(files["file"])}, headers=AUTH)
    expected = {"spec": str(files["file"].resolve())} if any_path else {"error": NOT_SERVED}
    assert (r.status_code, r.json()) == ((200 if any_path else 422), expected)
    r = c.post("/model", json={"spec": str(files["missing"])}, headers=AUTH)
    assert (r.status_code, r.json()) == (422, {"error": f"no model file at {files['missing']}" if any_path else NOT_SERVED})
    assert c.post("/model", json={"spec": str(files["file"])}).status_code == 401  # the token, as ever


def test_the_service_takes_any_model_path_only_on_loopback(monkeypatch, capsys):
    monkeypatch.setenv("CQA_SERVICE_TOKEN", TOKEN)
    for host in ("127.0.0.1", "localhost", "::1"):
        args, settings = parse(["--any-model-path", "--host", host])
        assert guard_of(args, settings).models.any_path
    assert not guard_of(*parse([])).models.any_path  # the allowlist by default
    for host in ("0.0.0.0", "192.168.1.20", "gpu-box"):
        with pytest.raises(SystemExit) as exited:
            parse(["--any-model-path", "--host", host])
        assert exited.value.code == 2
        assert f"--any-model-path is accepted only on a loopback --host (127.0.0.1, ::1, localhost), not {host}" \
            in capsys.readouterr().err


# ---- the launcher -------------------------------------------------------------------------------
class Recorder:
    """Stands for Voila's process and the service's supervisor: records the command, exits at once."""

    made: list[Recorder] = []

    def __init__(self, cmd, *args, **kwargs) -> None:
        Recorder.made.append(self)
        self.cmd = cmd

    def start(self) -> None: ...

    def stop(self) -> None: ...

    def wait(self, timeout=None) -> int:
        return 0


@pytest.mark.parametrize(("flags", "opened"), [
    ([], True),                                                  # the default: loopback, a token made at start
    (["--host", "localhost", "--token", "owner-token-1"], True),
    (["--host", "::1", "--password-hash", "argon2:x"], True),
    (["--host", "0.0.0.0"], False),                              # shared: every interface
    (["--host", "192.168.1.20", "--token", "lab-token-12"], False),
    (["--host", "127.0.0.1", "--base-url", "/cqa/"], False),     # loopback behind a proxy (deploy/)
    (["--no-auth"], False),                                      # no login: any local user could drive it
])
def test_cqa_workbench_passes_any_model_path_only_to_its_owners_service(tmp_path, monkeypatch, flags, opened):
    import workbench.serve as serve

    Recorder.made.clear()
    monkeypatch.setattr(serve.subprocess, "Popen", Recorder)
    monkeypatch.setattr(serve, "Supervisor", Recorder)
    monkeypatch.setattr(serve.signal, "signal", lambda *a: None)
    for var in ("CQA_ANALYSIS_URL", "CQA_TOKEN", "CQA_SERVICE_TOKEN", "JUPYTER_TOKEN", "CQA_CHECKPOINT"):
        monkeypatch.delenv(var, raising=False)
    assert main(["workbench", "--faces", str(tmp_path), "--service-port", "8896", *flags]) == 0
    service, voila = Recorder.made
    assert service.cmd[1:3] == ["-m", "workbench.service"] and voila.cmd[1:3] == ["-m", "workbench.voila_server"]
    assert ("--any-model-path" in service.cmd) is opened


@pytest.mark.parametrize(("host", "opens_any_path", "code"), [
    ("0.0.0.0", True, 2), ("0.0.0.0", False, 0), ("127.0.0.1", True, 0)])
def test_a_shared_dashboard_refuses_a_service_elsewhere_that_loads_any_path(monkeypatch, capsys, host,
                                                                            opens_any_path, code):
    import workbench.serve as serve

    Recorder.made.clear()
    monkeypatch.setattr(serve.subprocess, "Popen", Recorder)
    monkeypatch.setattr(serve.signal, "signal", lambda *a: None)
    monkeypatch.setattr(serve, "wait_ready", lambda url, proc=None, timeout=0, token=None: None)
    monkeypatch.setattr(serve.ServiceClient, "info", lambda self: {"any_model_path": opens_any_path})
    monkeypatch.setenv("CQA_SERVICE_TOKEN", TOKEN)
    assert main(["workbench", "--service", "http://127.0.0.1:8867", "--host", host]) == code
    if code:
        assert Recorder.made == []  # Voila never started
        assert ("--service http://127.0.0.1:8867 loads any model path (--any-model-path): a dashboard others can "
                "open needs a service without it") in capsys.readouterr().err


def test_owner_only_is_loopback_with_a_login_and_no_prefix():
    assert Access.choose().owner_only and Access.choose("::1", token="owner-token-1").owner_only
    assert not Access.choose("0.0.0.0").owner_only and not Access.choose("box.lab.org").owner_only
    assert not Access.choose(base_url="/cqa/").owner_only and not Access.choose(no_auth=True).owner_only


# ---- end to end: a real service, a viewer's session, the picker ---------------------------------
@pytest.mark.slow
def test_the_picker_loads_a_typed_model_file_through_the_service(tmp_path):
    from cqa_core.checkpoint import save_model
    from cqa_core.config import ModelConfig
    from cqa_core.model import create_model
    from workbench.app import Workbench
    from workbench.serve import Supervisor, free_port, service_command
    from workbench.session import Session

    mine = save_model(tmp_path / "mine.safetensors", create_model(ModelConfig(stem="light", branches=2)))
    (tmp_path / "faces").mkdir()  # an empty gallery: the dashboard analyses nothing until asked
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {**os.environ, "CQA_TORCH_THREADS": "1", "CQA_SERVICE_TOKEN": TOKEN, "CQA_CACHE": str(tmp_path / "cache")}
    sup = Supervisor(service_command(port, Settings(), any_model_path=True) + ["--no-warm"], env, url)
    sup.start()
    try:
        session = Session(Settings(service_url=url, service_token=TOKEN, faces=tmp_path / "faces"))
        assert session.any_model_path
        w = Workbench(session=session)
        assert w.model_path.placeholder == ANY_PATH_HINT
        w.model_path.value = str(mine)
        w.model_add.click()  # what the button does in the page
        assert w.messages.last_error is None, w.messages.widget.value
        key = str(Path(mine).resolve())
        assert key in session.models and (key, ) == tuple(v for _, v in w.model.options if v != "default")
        facts = session.info(key)
        assert (facts["name"], facts["kind"], facts["branches"]) == ("mine.safetensors", "cqa-face", 2)
        w.model_path.value = str(tmp_path / "nope.onnx")
        w.model_add.click()  # refused in one line that names the path
        assert re.search(r"no model file at \S*nope\.onnx", w.messages.widget.value)
    finally:
        sup.stop()


def test_a_shared_services_viewer_is_told_the_allowlist():
    from workbench.app import Workbench
    from workbench.session import Session

    class SharedBackend:
        remote = True
        status = staticmethod(lambda text: None)

        def info(self) -> dict:
            return {"label": "served", "untrained": False, "branches": 4, "description": "light", "any_model_path": False}

        def load(self, spec: str) -> dict:
            return {"spec": spec, "name": spec, "description": "light"}

        def forget(self, viewer: str) -> bool:
            return False

    session = Session(Settings(faces=Path("/nonexistent-gallery")), backend=SharedBackend())  # type: ignore[arg-type]
    assert not session.any_model_path
    w = Workbench(session=session)
    assert w.model_path.placeholder == SHARED_HINT and "--models DIR" in w.model_path.tooltip
    w.model_add.click()  # an empty box: what to type here
    assert "a file name from the --models folder" in w.messages.widget.value
