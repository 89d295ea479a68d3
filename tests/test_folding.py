"""BatchNorm folding: same outputs, a state dict that is still a valid checkpoint, reloads unfold."""

import torch

from rmbg_core.folding import fold_batchnorm
from rmbg_core.network import ConvBNReLU, ISNet
from rmbg_core.weights import build_network

from conftest import SMALL_INPUT, random_state_dict


def network_input(seed=0):
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(2, 3, *SMALL_INPUT, generator=generator) - 0.5


def unfolded(seed=0) -> ISNet:
    return build_network(random_state_dict(seed))


def test_folding_preserves_outputs_and_marks_every_block():
    reference, folded = unfolded(), fold_batchnorm(unfolded())
    blocks = [m for m in folded.modules() if isinstance(m, ConvBNReLU)]
    assert len(blocks) == 112 and all(block.batchnorm_folded for block in blocks)
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
    assert not any(m.batchnorm_folded for m in reloaded.modules() if isinstance(m, ConvBNReLU))
    x = network_input(1)
    with torch.inference_mode():
        torch.testing.assert_close(reloaded(x), unfolded()(x), atol=1e-5, rtol=0)


def test_loading_into_a_folded_network_unfolds_it():
    folded = fold_batchnorm(unfolded(0))
    folded.load_state_dict(random_state_dict(1))  # an ordinary, unfolded checkpoint
    assert not any(m.batchnorm_folded for m in folded.modules() if isinstance(m, ConvBNReLU))
    x = network_input(2)
    with torch.inference_mode():
        torch.testing.assert_close(folded(x), unfolded(1)(x), atol=1e-6, rtol=0)
        fold_batchnorm(folded)
        torch.testing.assert_close(folded(x), unfolded(1)(x), atol=1e-5, rtol=0)


def test_folding_twice_changes_nothing():
    once = fold_batchnorm(unfolded())
    weights = once.stage2.rebnconv1.conv_s1.weight.clone()
    fold_batchnorm(once)
    assert torch.equal(once.stage2.rebnconv1.conv_s1.weight, weights)


def test_loaded_models_are_folded(random_model, checkpoint_file):
    blocks = [m for m in random_model.network.modules() if isinstance(m, ConvBNReLU)]
    assert all(block.batchnorm_folded for block in blocks)
    assert random_model.checkpoint == checkpoint_file
