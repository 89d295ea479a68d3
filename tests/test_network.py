"""The IS-Net architecture: checkpoint key layout, output shapes, side outputs."""

import json

import pytest
import torch

from rmbg_core.model.network import ISNet, ResidualUBlock


def test_keys_and_shapes_match_rmbg_checkpoint(fixture_dir):
    expected = json.loads((fixture_dir / "state_dict_shapes.json").read_text())
    ours = {key: list(value.shape) for key, value in ISNet().state_dict().items()}
    assert ours == expected


def test_parameter_count_is_rmbg_14():
    # RMBG-1.4 is the 44.0 M-parameter IS-Net; a wrong block layout changes this immediately.
    assert sum(p.numel() for p in ISNet().parameters()) == 44_046_790


@pytest.mark.parametrize("height,dilated", [(7, False), (6, False), (5, False), (4, False), (4, True)])
def test_residual_u_block_keeps_size(height, dilated):
    block = ResidualUBlock(height, 8, 4, 6, dilated).eval()
    with torch.no_grad():
        out = block(torch.randn(1, 8, 37, 29))
    assert out.shape == (1, 6, 37, 29)


def test_forward_main_map_and_side_outputs_agree():
    torch.manual_seed(0)
    net = ISNet().eval()
    x = torch.randn(2, 3, 96, 64)
    with torch.no_grad():
        main = net(x)
        sides = net(x, side_outputs=True)
    assert main.shape == (2, 1, 96, 64)
    assert len(sides) == 6 and all(s.shape == (2, 1, 96, 64) for s in sides)
    torch.testing.assert_close(main, sides[0])
    assert float(main.min()) >= 0.0 and float(main.max()) <= 1.0


# Stages, blocks, convolutions (the first layer, inside a block, in a dilated stage) and side heads.
HOOKED = ("conv_in", "stage1", "stage6", "stage3d", "stage2.rebnconv1", "stage2.rebnconv1.conv_s1",
          "stage5.rebnconv2.bn_s1", "stage1d.rebnconv1d.relu_s1", "stage4d.rebnconvin", "side1", "side4")


@pytest.mark.parametrize("accelerate", [True, False], ids=["accelerated", "plain"])
@pytest.mark.parametrize("side_outputs", [False, True])
def test_forward_hooks_fire_on_every_kind_of_module(checkpoint_file, accelerate, side_outputs):
    from rmbg_core import load_model
    from rmbg_core.cpu.accelerator import is_accelerated

    model = load_model(checkpoint_file, device="cpu", dtype="float32", accelerate=accelerate)
    assert is_accelerated(model.network) is accelerate
    x = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(0)) - 0.5
    with torch.inference_mode():
        expected = model.network(x, side_outputs=side_outputs)
    calls, inputs = {}, {}

    def count(name):
        def hook(module, args, output):
            calls[name] = calls.get(name, 0) + 1
            inputs[name] = [tuple(arg.shape) for arg in args]
        return hook

    handles = [model.network.get_submodule(name).register_forward_hook(count(name)) for name in HOOKED]
    pre = model.network.stage2.register_forward_pre_hook(lambda module, args: calls.update(pre=len(args)))
    try:
        with torch.inference_mode():
            got = model.network(x, side_outputs=side_outputs)
    finally:
        for handle in [*handles, pre]:
            handle.remove()
    heads = {"side1": 1, "side4": 1 if side_outputs else 0}
    assert calls == {**{name: 1 for name in HOOKED if not name.startswith("side")},
                     **{name: n for name, n in heads.items() if n}, "pre": 1}
    assert inputs["stage3d"] == [(2, 256, 8, 8), (2, 256, 8, 8)], "a decoder stage sees its two inputs"
    assert inputs["conv_in"] == [(2, 3, 64, 64)]
    for a, b in zip(got if side_outputs else [got], expected if side_outputs else [expected]):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
