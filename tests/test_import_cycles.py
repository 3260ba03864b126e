"""No import cycle between the project's modules, counting imports inside functions, under
``__main__`` guards and through ``importlib`` (``tools/import_cycles.py``)."""

from __future__ import annotations

import ast
import importlib.util
from pathlib import Path

TOOL = Path(__file__).resolve().parents[1] / "tools" / "import_cycles.py"
spec = importlib.util.spec_from_file_location("import_cycles", TOOL)
import_cycles = importlib.util.module_from_spec(spec)
spec.loader.exec_module(import_cycles)


def test_the_detector_sees_function_level_importlib_and_main_guard_imports():
    known = {"p", "p.a", "p.b", "p.c", "p.cmds", "p.cmds.x", "p.cmds.y"}
    src = ("import importlib\nfrom typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from p import c\n"
           "def f():\n    from p.b import thing\n    importlib.import_module(f'p.cmds.{name}')\n"
           "if __name__ == '__main__':\n    import p\n")
    assert import_cycles.imported(ast.parse(src), "p.a", False, known) == {"p", "p.b", "p.cmds.x", "p.cmds.y"}
    assert import_cycles.cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert import_cycles.cycles({"a": {"b"}, "b": set()}) == []


def test_the_project_has_no_import_cycle():
    edges = import_cycles.graph()
    assert "cqa_core.commands.train" in edges["cqa_core.cli"]  # the cli's commands are real edges
    assert import_cycles.cycles(edges) == []
