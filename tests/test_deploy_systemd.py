"""The shipped systemd unit (``deploy/cqa-workbench.service``) keeps ``cqa workbench`` running.

``systemd-analyze verify`` checks the unit as shipped, with its ``cqa`` path pointed at this
environment's (the unit names /opt/cqa-face/.venv); the unit's command line is parsed by the real
``cqa`` parser and matches the shipped nginx configuration (loopback, port 8866, /cqa/).
"""

from __future__ import annotations

import configparser
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from cqa_core.cli import build_parser
from tests.support.proxy import CONF

ROOT = Path(__file__).resolve().parents[1]
UNIT = ROOT / "deploy" / "cqa-workbench.service"
SHIPPED_CQA = "/opt/cqa-face/.venv/bin/cqa"


def unit() -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]  # systemd keys are case-sensitive
    parser.read_string(UNIT.read_text())
    return parser


def test_the_unit_runs_the_workbench_behind_the_proxy():
    service = unit()["Service"]
    argv = shlex.split(service["ExecStart"])
    assert argv[0] == SHIPPED_CQA and argv[1] == "workbench"
    args = build_parser().parse_args(argv[1:])  # every flag is one `cqa workbench` takes
    assert (args.host, args.port, args.base_url) == ("127.0.0.1", 8866, "/cqa/")
    conf = CONF.read_text()
    assert "proxy_pass http://127.0.0.1:8866;" in conf and "location /cqa/" in conf  # what nginx expects
    assert service["Restart"] == "on-failure" and service["User"] not in ("", "root")
    assert service["EnvironmentFile"] == "/etc/cqa-workbench.env"  # the token: not in the unit, not in `ps`
    assert "--token" not in argv and service["KillMode"] == "control-group"  # kernels and service stop with it
    assert unit()["Install"]["WantedBy"] == "multi-user.target"


def test_systemd_analyze_verifies_the_unit(tmp_path):
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze not installed (Debian's systemd package has it)")
    cqa = Path(sys.executable).parent / "cqa"
    if not cqa.is_file():
        pytest.skip(f"no cqa console script beside {sys.executable} (pip install -e . makes it)")
    rendered = tmp_path / UNIT.name
    rendered.write_text(UNIT.read_text().replace(SHIPPED_CQA, str(cqa)))
    done = subprocess.run([analyze, "verify", str(rendered)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    problems = [line for line in done.stderr.splitlines() if rendered.name in line or "unit" in line.lower()]
    assert problems == [], problems  # systemd warns (and ignores the line) for a directive it cannot parse
