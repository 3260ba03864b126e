"""Benchmark runs started from the dashboard: the service's child-process jobs, its routes, the tab's progress bar."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from cqa_core.settings import Settings
from workbench.service.runjobs import RunJobs, eval_command, parse_bar

# a stand-in for `cqa eval --out`: tqdm-style bars on stderr, then the folder's run.json (or a failure)
FAKE = r"""
import sys, time, pathlib
folder = pathlib.Path(sys.argv[1])
for i in range(1, 5):
    sys.stderr.write(f"\rscore:  {25 * i}%|##        | {i}/4 [00:01<00:01,  1.05s/batch]")
    sys.stderr.flush()
    time.sleep(0.05)
if sys.argv[2] == "fail":
    sys.stderr.write("\nerror: no LFW at /nowhere\n")
    sys.exit(2)
folder.mkdir(parents=True)
(folder / "run.json").write_text("{}")
"""


def fake_command(outcome: str):
    return lambda settings, request, folder: [sys.executable, "-c", FAKE, str(folder), outcome]


def wait(jobs: RunJobs, job_id: str, timeout: float = 30.0) -> dict:
    end = time.monotonic() + timeout
    while jobs.status(job_id)["state"] == "running" and time.monotonic() < end:
        time.sleep(0.05)
    return jobs.status(job_id)


REQUEST = {"name": "cqa-lfw", "data": "lfw", "protocol": "verify", "limit": 40, "spec": None}


def test_parse_bar_reads_tqdm_lines():
    assert parse_bar("score:  50%|█████     | 1/2 [00:01<00:01,  1.05s/batch]") == ("score", 1, 2)
    assert parse_bar("embed (dlib ResNet): 100%|██████████| 12/12 [00:03<00:00]") == ("embed (dlib ResNet)", 12, 12)
    assert parse_bar("cqa eval  data=lfw  protocol=verify") is None


def test_a_run_is_followed_to_its_folder(tmp_path):
    jobs = RunJobs(Settings(runs=tmp_path / "runs"), command=fake_command("ok"))
    job = jobs.start(REQUEST)
    assert job["state"] == "running" and job["folder"] == str(tmp_path / "runs" / "cqa-lfw")
    with pytest.raises(ValueError, match="in progress"):
        jobs.start({**REQUEST, "name": "other"})  # one at a time
    done = wait(jobs, job["id"])
    assert done["state"] == "done" and done["percent"] == 100 and (tmp_path / "runs/cqa-lfw/run.json").is_file()
    assert (done["done"], done["total"]) == (4, 4)  # the last bar read


def test_a_failed_run_says_why_in_one_line(tmp_path):
    jobs = RunJobs(Settings(runs=tmp_path), command=fake_command("fail"))
    done = wait(jobs, jobs.start(REQUEST)["id"])
    assert done["state"] == "failed" and done["message"] == "error: no LFW at /nowhere"


@pytest.mark.parametrize("change, words", [
    ({"name": "../escape"}, "name"), ({"name": ""}, "name"), ({"data": "pairs:/etc:passwd"}, "data"),
    ({"protocol": "identify"}, "protocol"), ({"limit": 0}, "limit"), ({"limit": True}, "limit")])
def test_requests_the_service_does_not_run(tmp_path, change, words):
    jobs = RunJobs(Settings(runs=tmp_path), command=fake_command("ok"))
    with pytest.raises(ValueError, match=words):
        jobs.start({**REQUEST, **change})


def test_an_existing_run_is_never_overwritten(tmp_path):
    (tmp_path / "cqa-lfw").mkdir()
    with pytest.raises(ValueError, match="exists already"):
        RunJobs(Settings(runs=tmp_path), command=fake_command("ok")).start(REQUEST)


def test_eval_command_names_the_model_and_pairs(tmp_path):
    cmd = eval_command(Settings(), {**REQUEST, "spec": "dlib"}, tmp_path / "x")
    assert cmd[1:4] == ["-m", "cqa_core.cli", "eval"] and cmd[cmd.index("--model") + 1] == "dlib"
    assert cmd[cmd.index("--limit") + 1] == "40" and cmd[cmd.index("--out") + 1] == str(tmp_path / "x")
    assert "--model" not in eval_command(Settings(), REQUEST, tmp_path / "x")  # the served (bundled) model


def test_service_routes_start_and_report_a_run(tmp_path, monkeypatch):
    from starlette.testclient import TestClient

    from workbench.service import runjobs
    from workbench.service.app import AnalysisService, create_app
    from workbench.service.guard import Guard

    monkeypatch.setattr(runjobs, "eval_command", fake_command("ok"))
    monkeypatch.setattr(runjobs.RunJobs.__init__, "__defaults__", (fake_command("ok"), 10))
    service = AnalysisService(SimpleNamespace(settings=Settings(runs=tmp_path)))
    client = TestClient(create_app(service, Guard("secret")))
    assert client.post("/runs", json=REQUEST).status_code == 401  # the service's token, as every route
    auth = {"Authorization": "Bearer secret"}
    bad = client.post("/runs", json={**REQUEST, "spec": "/etc/passwd"}, headers=auth)
    assert bad.status_code == 422  # only the models the service serves
    job = client.post("/runs", json=REQUEST, headers=auth).json()
    end = time.monotonic() + 30
    while (st := client.post("/run_status", json={"job": job["id"]}, headers=auth).json())["state"] == "running":
        assert time.monotonic() < end
        time.sleep(0.05)
    assert st["state"] == "done" and Path(st["folder"], "run.json").is_file()


class FakeBackend:
    """A service client whose run goes 0 -> 50 -> 100 %."""

    remote = True

    def __init__(self, folder: str) -> None:
        self.folder, self.calls = folder, 0

    def start_run(self, request):
        self.request = request
        return {"id": "j1", "name": request["name"], "folder": self.folder, "state": "running", "stage": "starting",
                "done": 0, "total": 0, "percent": 0, "message": ""}

    def run_status(self, job):
        self.calls += 1
        done = self.calls >= 2
        return {"id": job, "name": "n", "folder": self.folder, "state": "done" if done else "running",
                "stage": "score", "done": 2 if done else 1, "total": 2, "percent": 100 if done else 50, "message": ""}


def test_the_tab_shows_progress_and_then_the_new_run(tmp_path, monkeypatch):
    from cqa_core.evaluation.runs.synthetic import synthetic_run
    from workbench.views import runstart
    from workbench.views.benchmark import BenchmarkPanel
    from workbench.views.common import Messages

    monkeypatch.setattr(runstart, "POLL_S", 0.01)
    backend = FakeBackend(str(tmp_path / "new"))
    session = SimpleNamespace(backend=backend, models={"default": {"name": "default model"}})
    panel = BenchmarkPanel(Messages(debug=True), tmp_path, lambda *a: None, session=session)
    panel.show()
    panel.starter.name.value = "new"
    synthetic_run(tmp_path / "new", pairs=200, faces=60)  # what the service writes meanwhile
    panel.starter.start()
    assert backend.request == {"name": "new", "data": "lfw", "protocol": "verify", "limit": 600, "spec": None}
    end = time.monotonic() + 10
    while panel.starter.job["state"] == "running" and time.monotonic() < end:
        time.sleep(0.01)
    time.sleep(0.2)
    assert panel.messages.last_error is None, panel.messages.widget.value
    assert panel.starter.bar.value == 100 and "done" in panel.starter.state.value
    assert panel.picker.value == str(tmp_path / "new") and panel.run.folder == tmp_path / "new"


def test_without_a_service_the_box_says_how_to_make_a_run(tmp_path):
    from workbench.views.common import Messages
    from workbench.views.runstart import RunStarter

    session = SimpleNamespace(backend=object(), models={"default": {"name": "default model"}})
    box = RunStarter(session, Messages(), lambda folder: None)
    assert box.start_button.disabled and "record_run" in box.state.value


@pytest.mark.slow
@pytest.mark.data
def test_a_real_run_in_a_child_process(tmp_path, lfw_root, monkeypatch):
    """``cqa eval --out`` on 20 LFW pairs with the bundled model, followed through its bars."""
    monkeypatch.delenv("CQA_CHECKPOINT", raising=False)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    jobs = RunJobs(Settings(runs=tmp_path / "runs", cache_root=tmp_path / "cache", data_root=lfw_root.parent))
    job = jobs.start({**REQUEST, "limit": 20})
    seen = set()
    end = time.monotonic() + 300
    while (st := jobs.status(job["id"]))["state"] == "running" and time.monotonic() < end:
        seen.add((st["stage"], st["percent"]))
        time.sleep(0.05)
    assert st["state"] == "done", st["message"]
    assert any(0 < p < 100 or stage != "starting" for stage, p in seen)  # progress was read while it ran
    from cqa_core.evaluation.runs.store import Run

    assert Run(st["folder"]).meta["n_pairs"] == 20
