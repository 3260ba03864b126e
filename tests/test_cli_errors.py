"""Every ``cqa`` subcommand turns bad input into one line on stderr and exit code 2 (issue 15, item 5).

Inputs: a malicious .bin (a pickle whose loading would call ``os.system``, written here), a
truncated .bin, a file that is not safetensors, and a path that does not exist. Each goes into
every file argument of every subcommand; ``--debug`` brings the traceback back.
"""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cqa_core.cli import build_parser, main
from cqa_core.data.binset import BinFormatError, write_bin

BAD_INPUTS = ("malicious_bin", "truncated_bin", "not_safetensors", "missing")


class _Evil:
    """Unpickling this runs ``os.system(command)``."""

    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self):
        return (os.system, (self.command,))


def make_inputs(root: Path) -> tuple[dict[str, Path], Path]:
    """The four bad inputs under ``root`` and the file the malicious one would create."""
    root.mkdir(parents=True, exist_ok=True)
    marker = root / "PWNED"
    evil = root / "evil.bin"
    evil.write_bytes(pickle.dumps(([_Evil(f"touch {marker}")], [True]), protocol=2))
    good = write_bin(root / "good.bin", [np.full((112, 112, 3), 90, np.uint8)] * 4, [True, False]).read_bytes()
    (root / "truncated.bin").write_bytes(good[: len(good) // 2])
    (root / "weights.safetensors").write_bytes(b"PK\x03\x04 not a safetensors header " * 8)
    paths = {"malicious_bin": evil, "truncated_bin": root / "truncated.bin",
             "not_safetensors": root / "weights.safetensors", "missing": root / "nowhere" / "missing.file"}
    return paths, marker


def _faces(tmp: Path) -> str:
    """A tiny aligned identity folder (2 people x 2 faces)."""
    for k in range(4):
        d = tmp / "faces" / f"id{k // 2}"
        d.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.full((112, 112, 3), 40 * k, np.uint8)).save(d / f"{k}.png")
    return str(tmp / "faces")


def _face(tmp: Path) -> str:
    p = tmp / "face.png"
    if not p.exists():
        Image.fromarray(np.full((112, 112, 3), 120, np.uint8)).save(p)
    return str(p)


def _run(tmp: Path) -> str:
    """A small synthetic run folder (``cqa eval --out``'s layout)."""
    from cqa_core.evaluation.runs.synthetic import synthetic_run  # writes Parquet: the runs extra

    return str(synthetic_run(tmp / "good_run", pairs=40, faces=20))


# subcommand -> the ways a bad path X reaches it (tmp: a scratch folder for outputs and good inputs)
Case = Callable[[str, Path], list[str]]
CASES: dict[str, dict[str, Case]] = {
    "info": {"stem": lambda x, t: ["info", "--stem", x]},
    "align": {"src": lambda x, t: ["align", x, str(t / "out")]},
    "data": {
        "pack": lambda x, t: ["data", "pack", x, str(t / "out" / "packed")],
        "fetch": lambda x, t: ["data", "fetch", "lfw", "--dest", x, "--base-url", (t / "no-mirror").as_uri()],
    },
    "eval": {
        "bin": lambda x, t: ["eval", "--data", f"bin:{x}", "--device", "cpu"],
        "pairs": lambda x, t: ["eval", "--data", f"pairs:{t}:{x}", "--device", "cpu"],
        "checkpoint": lambda x, t: ["eval", "--model", x, "--data", f"bin:{t / 'good.bin'}", "--device", "cpu"],
    },
    "compare": {  # a run is a folder: any file, or a folder without run.json, is refused in one line
        "run_a": lambda x, t: ["compare", x, _run(t)],
        "run_b": lambda x, t: ["compare", _run(t), x],
    },
    "audit": {
        "dataset": lambda x, t: ["audit", x, "--out", str(t / "out" / "a.parquet"), "--no-progress"],
        "checkpoint": lambda x, t: ["audit", _faces(t), "--model", x, "--out", str(t / "out" / "a.parquet"),
                                    "--no-progress"],
    },
    "train": {"config": lambda x, t: ["train", "--config", x]},
    "distill-targets": {
        "dataset": lambda x, t: ["distill-targets", x, "--teacher", "dlib", "--no-progress"],
        "teacher": lambda x, t: ["distill-targets", _faces(t), "--teacher", x, "--no-progress"],
    },
    "explain": {
        "image": lambda x, t: ["explain", x, "--out", str(t / "out")],
        "other": lambda x, t: ["explain", _face(t), x, "--out", str(t / "out")],
        "checkpoint": lambda x, t: ["explain", _face(t), "--model", x, "--out", str(t / "out")],
    },
    "export": {"checkpoint": lambda x, t: ["export", "--model", x, "--onnx", str(t / "out" / "m.onnx")]},
    "import-backbone": {
        "pth": lambda x, t: ["import-backbone", "insightface", x, "--stem", "r18", "--out", str(t / "out" / "m.st")],
    },
    "workbench": {
        "image": lambda x, t: ["workbench", "--terminal", x],
        "checkpoint": lambda x, t: ["workbench", "--terminal", _face(t), "--model", x],
        "faces": lambda x, t: ["workbench", "--faces", x],  # never a folder here, so Voila never starts
    },
}
PARAMS = [pytest.param(cmd, how, bad, id=f"{cmd}-{how}-{bad}")
          for cmd, hows in CASES.items() for how in hows for bad in BAD_INPUTS]


def test_every_subcommand_is_covered() -> None:
    """A new subcommand needs rows in CASES (this fails until it has them)."""
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    assert set(sub.choices) == set(CASES)


@pytest.mark.parametrize(("command", "how", "bad"), PARAMS)
def test_bad_input_is_one_clean_line(command: str, how: str, bad: str, tmp_path: Path, capsys,
                                     monkeypatch) -> None:
    monkeypatch.delenv("CQA_CHECKPOINT", raising=False)
    paths, marker = make_inputs(tmp_path)
    argv = CASES[command][how](str(paths[bad]), tmp_path)
    assert main(argv) == 2
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith(f"cqa {command}: error: ") and "Traceback" not in err
    assert not marker.exists(), "the malicious pickle ran code"


def test_messages_say_what_happened(tmp_path: Path, capsys) -> None:
    paths, marker = make_inputs(tmp_path)
    expected = {
        ("eval", "bin", "malicious_bin"): f"refused to load {os.system.__module__}.system",
        ("eval", "bin", "truncated_bin"): "truncated.bin: not a readable .bin pickle",
        ("eval", "bin", "missing"): ".bin file not found",
        ("eval", "checkpoint", "not_safetensors"): "is not a safetensors file",
        ("import-backbone", "pth", "malicious_bin"): "weights_only=True",
        ("export", "checkpoint", "missing"): "checkpoint not found",
        ("audit", "dataset", "missing"): "dataset not found",
        ("audit", "dataset", "malicious_bin"): "not a folder of faces or a RecordIO .rec file",
    }
    for (command, how, bad), text in expected.items():
        assert main(CASES[command][how](str(paths[bad]), tmp_path)) == 2
        assert text in capsys.readouterr().err
    assert not marker.exists()


def test_debug_shows_the_exception(tmp_path: Path) -> None:
    paths, marker = make_inputs(tmp_path)
    with pytest.raises(BinFormatError, match="refused"):
        main(["--debug", "eval", "--data", f"bin:{paths['malicious_bin']}", "--device", "cpu"])
    assert not marker.exists()


@pytest.mark.slow
@pytest.mark.parametrize(("command", "how", "bad", "message"), [
    ("eval", "bin", "truncated_bin", "not a readable .bin pickle (UnpicklingError: pickle data was truncated)"),
    ("import-backbone", "pth", "truncated_bin", "not a tensor state dict that loads with torch.load(weights_only=True)"),
])
def test_a_real_process_prints_one_line(command: str, how: str, bad: str, message: str, tmp_path: Path) -> None:
    """Outside pytest's capture: no traceback, and no library warning beside the error line."""
    paths, marker = make_inputs(tmp_path)
    root = Path(__file__).resolve().parents[1]
    argv = CASES[command][how](str(paths[bad]), tmp_path)
    env = {**os.environ, "PYTHONPATH": str(root)}
    env.pop("CQA_CHECKPOINT", None)
    proc = subprocess.run([sys.executable, "-m", "cqa_core.cli", *argv], capture_output=True, text=True, cwd=root,
                          timeout=300, env=env)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"cqa {command}: error: {paths[bad]}"), proc.stderr
    assert message in lines[0]
    assert not marker.exists()


def test_checkpoint_is_the_old_name_of_model(tmp_path: Path, capsys) -> None:
    """``--checkpoint X`` means ``--model X`` in every command, with one note on stderr."""
    from cqa_core.cli import build_parser

    missing = str(tmp_path / "nowhere.safetensors")
    for argv in (["eval", "--checkpoint", missing], ["explain", "--checkpoint", missing],
                 ["audit", "lfw", "--out", "x", "--checkpoint", missing], ["export", "--onnx", "x", "--checkpoint", missing],
                 ["workbench", "--checkpoint", missing]):
        assert build_parser().parse_args(argv).model == missing, argv
        assert capsys.readouterr().err == "note: --checkpoint is deprecated; use --model (same meaning)\n"
    assert main(["export", "--checkpoint", missing, "--onnx", str(tmp_path / "m.onnx")]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err[0].startswith("note: --checkpoint is deprecated") and err[1].startswith("cqa export: error: ")
    assert len(err) == 2 and "checkpoint not found" in err[1]
