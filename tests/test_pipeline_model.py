"""RMBGConfig / RMBGForSegmentation: loading BRIA-style checkpoints exactly, save/load round trips, outputs.

transformers 5 may re-initialise tensors of a custom model after loading without failing; every
tensor here is set to a value no initialiser produces and compared bit for bit after loading.
"""

import json

import pytest
import torch
from safetensors.torch import save_file

from configuration_rmbg import RMBGConfig
from conftest import random_state_dict
from modeling_rmbg import RMBGForSegmentation
from rmbg_core.model.weights import build_network


@pytest.fixture(scope="module")
def distinctive_state():
    """A full RMBG-1.4 state dict where no tensor equals what any initialiser would write."""
    state = random_state_dict(5)
    for key, value in state.items():
        if key.endswith("num_batches_tracked"):
            state[key] = torch.tensor(1234)
        elif key.endswith(("bn_s1.weight", "bn_s1.bias", "running_mean")):
            state[key] = torch.randn_like(value) * 0.3 + 0.1
        elif key.endswith("running_var"):
            state[key] = torch.rand_like(value) + 0.5
    return state


def write_folder(folder, state):
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model_type": "rmbg", "torch_dtype": "float32"}))
    save_file(state, str(folder / "model.safetensors"), metadata={"format": "pt"})
    return folder


def assert_holds_exactly(model, state, expected_missing=()):
    loaded = model.state_dict()
    assert sorted(loaded) == sorted(f"net.{key}" for key in list(state) + list(expected_missing))
    differing = [key for key, value in state.items() if not torch.equal(loaded[f"net.{key}"], value)]
    assert differing == [], f"{len(differing)} tensors changed by loading, e.g. {differing[:3]}"


def test_unprefixed_bria_keys_load_exactly(tmp_path, distinctive_state):
    folder = write_folder(tmp_path / "bria_style", distinctive_state)
    model, info = RMBGForSegmentation.from_pretrained(folder, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"]
    assert_holds_exactly(model, distinctive_state)
    assert not model.training and model.dtype == torch.float32


def test_batchnorm_is_safe_when_counters_are_missing(tmp_path, distinctive_state):
    """Modules with a missing tensor get _init_weights; their loaded BatchNorm stats must survive it."""
    state = {k: v for k, v in distinctive_state.items() if not k.endswith("num_batches_tracked")}
    counters = [k for k in distinctive_state if k.endswith("num_batches_tracked")]
    model = RMBGForSegmentation.from_pretrained(write_folder(tmp_path / "no_counters", state))
    assert_holds_exactly(model, state, expected_missing=counters)
    assert all(int(model.state_dict()[f"net.{key}"]) == 0 for key in counters)


def test_save_pretrained_round_trip_is_exact(tmp_path, distinctive_state):
    model = RMBGForSegmentation.from_network(build_network(dict(distinctive_state)))
    assert_holds_exactly(model, distinctive_state)
    model.save_pretrained(tmp_path / "saved")
    again, info = RMBGForSegmentation.from_pretrained(tmp_path / "saved", output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"]
    assert_holds_exactly(again, distinctive_state)
    assert json.loads((tmp_path / "saved" / "config.json").read_text())["model_type"] == "rmbg"


def test_outputs_read_like_brias_remote_code(distinctive_state):
    """outputs[0][0] is the main map (B, 1, H, W) in [0, 1], as BRIA's model card indexes it."""
    network = build_network(dict(distinctive_state))
    model = RMBGForSegmentation.from_network(network)
    pixels = torch.rand(2, 3, 32, 48) - 0.5
    with torch.no_grad():
        outputs = model(pixels)
        main = outputs[0][0]
        assert main.shape == (2, 1, 32, 48) and torch.equal(main, network(pixels))
        assert torch.equal(outputs.saliency_maps[0], main)
        sides = model(pixels, side_outputs=True).saliency_maps
        assert len(sides) == 6 and torch.equal(sides[0], main)
        assert isinstance(model(pixels, return_dict=False), tuple)


def test_config_defaults_and_round_trip(tmp_path):
    config = RMBGConfig()
    assert (config.in_channels, config.out_channels, config.model_input_size) == (3, 1, [1024, 1024])
    RMBGConfig(model_input_size=(512, 768)).save_pretrained(tmp_path)
    assert RMBGConfig.from_pretrained(tmp_path).model_input_size == [512, 768]


def test_from_network_keeps_the_dtype_and_takes_the_tensors(distinctive_state):
    network = build_network(dict(distinctive_state), torch.bfloat16)
    model = RMBGForSegmentation.from_network(network)
    assert model.dtype == torch.bfloat16
    assert model.net.conv_in.weight.data_ptr() == network.conv_in.weight.data_ptr(), "no copy of the weights"
