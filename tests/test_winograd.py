"""Winograd F(2x2, 3x3): the same convolution as the direct one, taken where it suits and only there."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from rmbg_core.cpu import winograd
from rmbg_core.cpu.accelerator import accelerate
from rmbg_core.cpu.kernels import conv_relu, drop_packed_weights, onednn_fusion_available
from rmbg_core.cpu.winograd import transform_weights, winograd_conv_relu, winograd_suits
from rmbg_core.model.network import ISNet

pytestmark = pytest.mark.skipif(not onednn_fusion_available(torch.float32), reason="needs oneDNN (mkldnn) on the CPU")


def reference(inputs, weight, bias):
    """relu(conv(cat(inputs))) in float64: the exact value both algorithms approximate."""
    x = torch.cat([i.double() for i in inputs], 1)
    return F.relu(F.conv2d(x, weight.double(), None if bias is None else bias.double(), padding=1))


@pytest.mark.parametrize("batch,parts,out_channels,height,width,group_bytes,with_bias", [
    (1, (8,), 6, 8, 12, None, True),            # one band
    (2, (5, 3), 7, 10, 6, None, True),           # a concatenation, a batch
    (1, (6,), 4, 10, 14, 4 * 7 * 6 * 4 * 2, False),  # bands of 2 tile rows over 5: the last band is 1 row
    (1, (4, 4), 5, 6, 8, 1, True),               # bands of 1 tile row: first and last band are edge rows
])
def test_matches_the_convolution(batch, parts, out_channels, height, width, group_bytes, with_bias, monkeypatch):
    if group_bytes is not None:
        monkeypatch.setattr(winograd, "GROUP_BYTES", group_bytes)
    torch.manual_seed(0)
    inputs = tuple(torch.randn(batch, c, height, width).contiguous(memory_format=torch.channels_last) for c in parts)
    weight = torch.randn(out_channels, sum(parts), 3, 3) / (3 * sum(parts)) ** 0.5
    bias = torch.randn(out_channels) if with_bias else None
    tiles = winograd.band_rows(sum(parts), out_channels, height, width, 4) * (width // 2)
    with torch.inference_mode():
        got = winograd_conv_relu(inputs, transform_weights(weight, tiles), bias)
    expected = reference(inputs, weight, bias)
    assert got.shape == expected.shape and got.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(got.double(), expected, atol=2e-6, rtol=1e-5)
    assert float(expected.min()) == 0.0 and float(expected.max()) > 0.0


def test_plain_nchw_inputs_give_the_same_result():
    torch.manual_seed(4)
    inputs = (torch.randn(1, 6, 8, 10), torch.randn(1, 2, 8, 10))  # contiguous NCHW, not channels-last
    weight, bias = torch.randn(5, 8, 3, 3) / 5, torch.randn(5)
    with torch.inference_mode():
        got = winograd_conv_relu(inputs, transform_weights(weight, 20), bias)
    torch.testing.assert_close(got.double(), reference(inputs, weight, bias), atol=2e-6, rtol=1e-5)


def test_error_is_no_larger_than_the_direct_convolutions():
    # A deep layer of the network (512 channels in, 128 out, 64x64): both are float32 sums of 4608 terms.
    torch.manual_seed(1)
    layer = nn.Conv2d(512, 128, 3, padding=1).requires_grad_(False)
    x = torch.randn(1, 512, 64, 64).contiguous(memory_format=torch.channels_last)
    expected = reference((x,), layer.weight, layer.bias)
    with torch.inference_mode():
        fast = conv_relu(layer, x)
        direct = F.relu(F.conv2d(x, layer.weight, layer.bias, padding=1))
    assert "_winograd_weights" in layer.__dict__, "this layer should take the Winograd path"
    assert (fast.double() - expected).abs().max() <= 2 * (direct.double() - expected).abs().max()


@pytest.mark.parametrize("in_channels,out_channels,size,kwargs,suits", [
    (256, 128, (64, 64), {}, True),
    (512, 128, (128, 128), {}, True),
    (256, 128, (64, 64), {"dilation": 2, "padding": 2}, False),
    (256, 128, (64, 64), {"stride": 2}, False),
    (256, 128, (63, 64), {}, False),      # odd size: no 2x2 tiling
    (64, 64, (128, 128), {}, False),      # few channels: the transforms cost more than they save
    (512, 512, (16, 16), {}, False),      # few tiles
    (128, 256, (256, 256), {}, False),    # large maps: the direct convolution keeps up
])
def test_taken_only_where_it_pays(in_channels, out_channels, size, kwargs, suits):
    options = {"padding": 1, **kwargs}
    layer = nn.Conv2d(in_channels, out_channels, 3, **options)
    assert winograd_suits(layer, in_channels, *size) is suits


def test_transformed_weights_follow_weight_changes():
    torch.manual_seed(2)
    layer = nn.Conv2d(256, 128, 3, padding=1).requires_grad_(False)
    first = torch.randn(1, 128, 64, 64).contiguous(memory_format=torch.channels_last)
    second = torch.randn(1, 128, 64, 64).contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        before = conv_relu(layer, first, second)
        assert "_winograd_weights" in layer.__dict__
        layer.weight.mul_(-1.0)  # in place: same storage, new version
        after = conv_relu(layer, first, second)
        torch.testing.assert_close(after.double(), reference((first, second), layer.weight, layer.bias),
                                   atol=1e-4, rtol=1e-4)
        assert not torch.allclose(after, before)
    drop_packed_weights(layer)
    assert "_winograd_weights" not in layer.__dict__
    assert len(layer.state_dict()) == 2, "the transformed weights stay out of the state dict"


def test_bfloat16_keeps_the_direct_path():
    if not onednn_fusion_available(torch.bfloat16):
        pytest.skip("no oneDNN bfloat16 support on this CPU / torch build")
    layer = nn.Conv2d(256, 128, 3, padding=1).requires_grad_(False).to(torch.bfloat16)
    x = torch.randn(1, 256, 64, 64, dtype=torch.bfloat16).contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        conv_relu(layer, x)
    assert "_winograd_weights" not in layer.__dict__


def test_network_takes_it_for_deep_layers_and_agrees_with_the_direct_path():
    torch.manual_seed(3)
    net = accelerate(ISNet().eval().requires_grad_(False))
    x = torch.rand(1, 3, 512, 512) - 0.5
    with torch.inference_mode():
        net.winograd = False
        direct = net(x)
        assert not any("_winograd_weights" in m.__dict__ for m in net.modules())
        net.winograd = True
        fast = net(x)
    taken = [name for name, m in net.named_modules() if "_winograd_weights" in m.__dict__]
    # At 512x512 stage 3 runs at 64x64 (128 -> 256 channels in, 128+128 -> 256 out).
    assert "stage3.rebnconvin.conv_s1" in taken and "stage3d.rebnconvin.conv_s1" in taken
    assert not any(name.startswith(("stage1.", "stage1d.", "stage6.")) for name in taken)
    torch.testing.assert_close(fast, direct, atol=1e-5, rtol=1e-4)
