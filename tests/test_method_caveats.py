"""A method whose maps survive model randomisation carries a caveat beside its name: in the registry's
record, ``cqa explain --list-methods``, the one stderr line when it runs, and the dashboard's map titles.
The slow test reruns the randomisation check on a method the leaderboard found failing it."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from PIL import Image

from cqa_core.cli import main
from cqa_core.explain import methods as registry
from tests.support.galleries import noise_gallery
from workbench.views.caveat import caveat_note


def caveated() -> list[registry.Method]:
    found = [m for m in registry.methods().values() if m.caveat]
    assert found, "no method carries a caveat: RANDOMISATION_CAVEATS is empty"
    return found


def test_the_caveat_is_set_from_the_measured_constant_and_is_in_the_record():
    assert {m.name for m in caveated()} == set(registry.RANDOMISATION_CAVEATS)
    for name, rho in registry.RANDOMISATION_CAVEATS.items():
        assert max(rho) >= registry.SURVIVES_RANDOMISATION  # only methods that failed the check
        record = registry.get(name).record()
        assert record["caveat"] == registry.randomisation_caveat(rho) and f"{rho[0]:.2f}" in record["caveat"]
        assert "leaderboard" in record["caveat"]
    clean = next(m for m in registry.methods().values() if m.name not in registry.RANDOMISATION_CAVEATS)
    assert clean.record()["caveat"] == ""


def test_list_methods_prints_the_caveat_under_its_method(capsys):
    assert main(["explain", "--list-methods"]) == 0
    lines = capsys.readouterr().out.splitlines()
    for m in caveated():
        i = next(i for i, line in enumerate(lines) if line.split()[:1] == [m.name])
        assert lines[i + 1].split()[0] == "caveat:" and m.caveat in lines[i + 1]
    assert sum("caveat:" in line for line in lines) == len(caveated())


def test_running_a_caveated_method_says_so_on_stderr(tmp_path, capsys):
    rng = np.random.default_rng(0)
    faces = []
    for i in range(2):
        faces.append(tmp_path / f"f{i}.png")
        Image.fromarray(rng.integers(0, 255, (112, 112, 3), dtype=np.uint8)).save(faces[-1])
    m = min(caveated(), key=lambda m: m.cost != registry.Cost.FAST)  # a fast one when there is one
    assert main(["explain", str(faces[0]), str(faces[1]), "--methods", m.name, "--out", str(tmp_path / "out")]) == 0
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("caveat:")]
    assert err == [f"caveat: {m.name} {m.caveat}"]


def test_caveat_note_is_one_escaped_line_or_nothing():
    assert caveat_note({"caveat": ""}) == "" and caveat_note(None) == ""
    note = caveat_note({"caveat": "maps <b>survive</b>"})
    assert "cqa-method-caveat" in note and "&lt;b&gt;survive&lt;/b&gt;" in note and "<b>" not in note


@pytest.fixture()
def wb(tmp_path, monkeypatch):
    """The dashboard on the default model over three synthetic faces, with a caveat on Grad-CAM (no listed
    method carries one on the current leaderboard)."""
    from cqa_core.settings import Settings
    from workbench.start import open_workbench

    monkeypatch.delenv("CQA_CHECKPOINT", raising=False)
    monkeypatch.setitem(registry.REGISTRY, "gradcam",
                        dataclasses.replace(registry.get("gradcam"), caveat="maps <i>survive</i> randomisation"))
    noise_gallery(tmp_path / "faces", 3)
    return open_workbench(Settings(faces=tmp_path / "faces"))


def test_the_face_and_pair_views_show_the_caveat_under_the_map_title(wb):
    label = registry.get("gradcam").label
    face, pair = wb.view(0), wb.view(1)
    face.source.value = label
    assert wb.messages.last_error is None, wb.messages.widget.value
    assert "cqa-method-caveat" in face.main_title.value and "maps &lt;i&gt;survive&lt;/i&gt;" in face.main_title.value
    wb.tabs.selected_index = 1
    pair.source.value = label
    assert all("cqa-method-caveat" in t.value and "survive" in t.value for t in pair.titles), pair.titles[0].value
    face.source.value = "occlusion"  # no caveat: no line
    assert wb.messages.last_error is None and "cqa-method-caveat" not in face.main_title.value
    pair.source.value = "occlusion"
    assert not any("cqa-method-caveat" in t.value for t in pair.titles)


@pytest.mark.slow
@pytest.mark.data
def test_a_method_that_survives_randomisation_still_does(lfw_root):
    """The leaderboard's randomisation check rerun on pair 0 (its pair) and pair 1: Spearman stays high."""
    pytest.importorskip("quantus", reason="the checks extra (Quantus) is not installed")
    from benchmarks.explanation_checks import dev_pairs, pair_chips, randomisation
    from cqa_core.recognizers.load import load_recognizer

    name = "FEM"  # the cheapest of them (a map in milliseconds); pair 1 shares face a with pair 0
    assert name in registry.RANDOMISATION_CAVEATS
    rec = load_recognizer("default")
    runs = [randomisation(rec, a, b, name) for a, b in pair_chips(rec, dev_pairs(2))]
    rhos = [(r["mprt_spearman_mean"], r["mprt_spearman_last"]) for r in runs]
    assert all(max(rho) >= registry.SURVIVES_RANDOMISATION for rho in rhos), rhos
    assert rhos[0][0] == pytest.approx(registry.RANDOMISATION_CAVEATS[name][0], abs=0.01)  # the leaderboard's pair
