"""The terminal demo explains one face: b branch maps, quality scores and CAL penalties."""

import numpy as np
from PIL import Image

from cqa_core.cli import main


def test_workbench_demo_on_a_photo(tmp_path, capsys):
    rng = np.random.default_rng(0)
    photo = tmp_path / "face.jpg"
    Image.fromarray(rng.integers(0, 255, (250, 250, 3), dtype=np.uint8)).save(photo)
    assert main(["workbench", str(photo)]) == 0
    out = capsys.readouterr().out
    assert "UNTRAINED" in out  # no default weights yet, and it says so
    assert all(f"branch {i} q=" in out for i in range(4))
    assert "CAL penalty" in out


def test_workbench_missing_file_is_a_clear_error(tmp_path, capsys):
    assert main(["workbench", str(tmp_path / "nope.jpg")]) == 2
    assert "nope.jpg" in capsys.readouterr().err
