"""``cqa eval --protocol edc`` end to end on a .bin written here: it reads the same embeddings and
the same operating point as the accuracy protocols, and bad options are one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from cqa_core.cli import main
from cqa_core.data.binset import write_bin


def _bin(tmp: Path, n: int = 30) -> Path:
    """n pairs: even pairs are a face and a noisy copy (same), odd pairs two different faces."""
    rng = np.random.default_rng(0)
    base = [np.kron(rng.integers(0, 255, (14, 14, 3)), np.ones((8, 8, 1))).astype(np.uint8) for _ in range(2 * n)]
    images, same = [], []
    for k in range(n):
        a = base[2 * k]
        b = np.clip(a + rng.normal(0, 8, a.shape), 0, 255).astype(np.uint8) if k % 2 == 0 else base[2 * k + 1]
        images += [a, b]
        same.append(k % 2 == 0)
    return write_bin(tmp / "pairs.bin", images, same)


@pytest.mark.parametrize("pairs", ["verify", "cross-quality"])
def test_edc_starts_where_tar_at_far_ends(pairs: str, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("CQA_CHECKPOINT", raising=False)
    data = f"bin:{_bin(tmp_path)}"
    common = ["--data", data, "--device", "cpu", "--degrade", "blur", "--severity", "4"]
    acc_protocol = "verify" if pairs == "verify" else "cross-quality"
    assert main(["eval", *common, "--protocol", acc_protocol, "--json", str(tmp_path / "acc.json")]) == 0
    assert main(["eval", *common, "--protocol", "edc", "--edc-pairs", pairs, "--json", str(tmp_path / "edc.json")]) == 0
    acc = json.loads((tmp_path / "acc.json").read_text())
    res = json.loads((tmp_path / "edc.json").read_text())
    assert res["edc_pairs"] == pairs and res["n_mated"] == 15 and res["n_impostor"] == 15
    for fmr in ("0.01", "0.001"):  # with 15 impostors both allow none: the threshold is the top impostor
        assert res["fmr"][fmr]["fnmr_at_0"] == pytest.approx(1 - acc["tar_at_far"][fmr])
        assert set(res["fmr"][fmr]["curves"]) == {"qan", "norm", "random"}
        for c in res["fmr"][fmr]["curves"].values():
            assert len(c["fnmr"]) == len(res["fractions"]) and c["fnmr"][0] == pytest.approx(res["fmr"][fmr]["fnmr_at_0"])
    if pairs == "cross-quality":
        assert res["degrade"] == "blur" and res["severity"] == 4


def test_bad_max_discard_is_one_line(tmp_path: Path, capsys) -> None:
    argv = ["eval", "--data", f"bin:{_bin(tmp_path, 4)}", "--device", "cpu", "--protocol", "edc",
            "--edc-max-discard", "1.5"]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--edc-max-discard must be in (0, 1)" in err[0]
