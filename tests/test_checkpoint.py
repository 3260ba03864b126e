"""Weights round-trip through safetensors; other files are refused with a clear error."""

import pickle

import pytest
import torch

from cqa_core.checkpoint import CheckpointError, load_model, model_config_of, save_model
from cqa_core.config import ModelConfig
from cqa_core.model import create_model


def test_round_trip_gives_identical_outputs(tmp_path):
    model = create_model(ModelConfig(stem="light", branches=2)).eval()
    path = save_model(tmp_path / "m.safetensors", model)
    loaded = load_model(path)
    assert not loaded.training
    assert model_config_of(path) == model.config
    x = torch.randn(2, 3, 112, 112)
    with torch.no_grad():
        assert torch.equal(model(x).embedding, loaded(x).embedding)
    assert not list(tmp_path.glob(".*.tmp"))  # the temp file was renamed away


def test_directory_is_read_through_model_safetensors(tmp_path):
    save_model(tmp_path / "model.safetensors", create_model(ModelConfig(stem="light", branches=2)))
    assert load_model(tmp_path).config.branches == 2


def test_pickle_is_refused(tmp_path):
    p = tmp_path / "evil.pt"
    p.write_bytes(pickle.dumps({"weights": [1, 2, 3]}))
    with pytest.raises(CheckpointError, match="not a safetensors file"):
        load_model(p)


def test_foreign_safetensors_and_missing_files(tmp_path):
    from safetensors.torch import save_file

    save_file({"w": torch.zeros(2)}, str(tmp_path / "other.safetensors"))
    with pytest.raises(CheckpointError, match="not a CQA-Face checkpoint"):
        load_model(tmp_path / "other.safetensors")
    with pytest.raises(CheckpointError, match="not found"):
        load_model(tmp_path / "nope.safetensors")


def test_weights_that_do_not_fit_their_config(tmp_path):
    from safetensors.torch import load_file, save_file

    path = save_model(tmp_path / "m.safetensors", create_model(ModelConfig(stem="light", branches=2)))
    state = load_file(str(path))
    state["fc.weight"] = torch.zeros(3, 3)
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata()
    save_file(state, str(path), metadata=meta)
    with pytest.raises(CheckpointError, match="does not fit"):
        load_model(path)


def test_written_files_get_normal_permissions(tmp_path):
    import os
    import stat

    umask = os.umask(0o022)
    try:
        path = save_model(tmp_path / "m.safetensors", create_model(ModelConfig(stem="light", branches=2)))
    finally:
        os.umask(umask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644  # not mkstemp's private 0600
