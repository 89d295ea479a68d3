"""BatchNorm folding: same outputs, a state dict that is still a valid checkpoint, reloads unfold."""

import importlib.util

import torch

import rmbg_core.model.network
from rmbg_core.cpu.accelerator import accelerate, is_accelerated
from rmbg_core.cpu.folding import batchnorm_is_identity, conv_bn_blocks, fold_batchnorm
from rmbg_core.model.network import ISNet
from rmbg_core.model.weights import build_network

from conftest import SMALL_INPUT, random_state_dict


def network_input(seed=0):
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(2, 3, *SMALL_INPUT, generator=generator) - 0.5


def unfolded(seed=0) -> ISNet:
    return build_network(random_state_dict(seed))


def folded_blocks(network):
    return [batchnorm_is_identity(block.bn_s1) for block in conv_bn_blocks(network)]


def test_folding_preserves_outputs_and_folds_every_block():
    reference, folded = unfolded(), fold_batchnorm(unfolded())
    assert folded_blocks(reference) == [False] * 112 and folded_blocks(folded) == [True] * 112
    x = network_input()
    with torch.inference_mode():
        expected, got = reference(x), folded(x)
        assert not torch.equal(expected, torch.zeros_like(expected))
        torch.testing.assert_close(got, expected, atol=1e-5, rtol=0)
        sides, folded_sides = reference(x, side_outputs=True), folded(x, side_outputs=True)
    assert len(sides) == len(folded_sides) == 6
    for a, b in zip(sides, folded_sides):
        torch.testing.assert_close(b, a, atol=1e-5, rtol=0)


def test_folded_state_dict_is_a_checkpoint_with_the_same_outputs():
    folded = fold_batchnorm(unfolded())
    state = {key: value.clone() for key, value in folded.state_dict().items()}
    assert state.keys() == random_state_dict(0).keys()
    bn = folded.stage1.rebnconvin.bn_s1
    assert torch.equal(bn.running_mean, torch.zeros_like(bn.running_mean))
    assert torch.equal(bn.running_var, torch.ones_like(bn.running_var))
    reloaded = build_network(state)  # strict loading, BatchNorm applied (identity statistics)
    assert not is_accelerated(reloaded)
    x = network_input(1)
    with torch.inference_mode():
        torch.testing.assert_close(reloaded(x), unfolded()(x), atol=1e-5, rtol=0)


def test_loading_into_an_accelerated_network_unfolds_it():
    network = accelerate(unfolded(0))
    network.load_state_dict(random_state_dict(1))  # an ordinary, unfolded checkpoint
    assert folded_blocks(network) == [False] * 112 and is_accelerated(network)
    x = network_input(2)
    with torch.inference_mode():
        # The accelerated blocks see BatchNorm that is no longer the identity and apply it.
        torch.testing.assert_close(network(x), unfolded(1)(x), atol=1e-6, rtol=0)
        accelerate(network)
        assert folded_blocks(network) == [True] * 112
        torch.testing.assert_close(network(x), unfolded(1)(x), atol=1e-5, rtol=0)


def test_folding_twice_changes_nothing():
    once = fold_batchnorm(unfolded())
    weights = once.stage2.rebnconv1.conv_s1.weight.clone()
    version = once.stage2.rebnconv1.conv_s1.weight._version
    fold_batchnorm(once)
    assert torch.equal(once.stage2.rebnconv1.conv_s1.weight, weights)
    assert once.stage2.rebnconv1.conv_s1.weight._version == version, "nothing written"


def test_blocks_of_a_second_import_of_the_network_module_are_folded_and_accelerated():
    """transformers' remote code may import network.py twice: blocks are found by structure, not class."""
    spec = importlib.util.spec_from_file_location("second_copy_of_network", rmbg_core.model.network.__file__)
    second = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(second)
    torch.manual_seed(0)
    network = second.ISNet().eval().requires_grad_(False)
    network.load_state_dict(random_state_dict(3))
    assert type(network.stage1.rebnconvin) is not rmbg_core.model.network.ConvBNReLU
    x = network_input(3)
    with torch.inference_mode():
        expected = network(x)
        accelerate(network)
        got = network(x)
    assert is_accelerated(network) and folded_blocks(network) == [True] * 112
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=0)


def test_loaded_models_are_folded_unless_the_accelerator_is_off(random_model, checkpoint_file):
    from rmbg_core import load_model

    assert folded_blocks(random_model.network) == [True] * 112
    assert random_model.checkpoint == checkpoint_file
    plain = load_model(checkpoint_file, device="cpu", dtype="float32", accelerate=False)
    assert folded_blocks(plain.network) == [False] * 112
    state = plain.network.state_dict()
    assert all(torch.equal(state[key], value) for key, value in random_state_dict(0).items()), "the file's tensors"
