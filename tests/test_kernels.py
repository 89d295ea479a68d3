"""The fused oneDNN kernels compute what the plain PyTorch ops compute, and step aside when they must."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from rmbg_core.cpu.kernels import conv_relu, drop_packed_weights, onednn_fusion_available, single_output_conv3x3


def conv(in_channels=6, out_channels=5, dilation=1, seed=0):
    torch.manual_seed(seed)
    return nn.Conv2d(in_channels, out_channels, 3, padding=dilation, dilation=dilation).requires_grad_(False)


@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last])
@pytest.mark.parametrize("dilation", [1, 2])
def test_conv_relu_matches_pytorch(layout, dilation):
    layer = conv(dilation=dilation)
    x = torch.randn(2, 6, 19, 23).contiguous(memory_format=layout)
    with torch.inference_mode():
        expected = F.relu(F.conv2d(x, layer.weight, layer.bias, padding=dilation, dilation=dilation))
        torch.testing.assert_close(conv_relu(layer, x), expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last])
def test_joined_convolution_matches_concatenation(layout):
    layer = conv(in_channels=7, out_channels=4)
    first = torch.randn(1, 3, 17, 13).contiguous(memory_format=layout)
    second = torch.randn(1, 4, 17, 13).contiguous(memory_format=layout)
    with torch.inference_mode():
        expected = F.relu(layer(torch.cat((first, second), 1)))
        got = conv_relu(layer, first, second)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
    assert float(expected.min()) == 0.0 and float(expected.max()) > 0.0


def test_bfloat16_fusion_matches_pytorch():
    if not onednn_fusion_available(torch.bfloat16):
        pytest.skip("no oneDNN bfloat16 support on this CPU / torch build")
    layer = conv(in_channels=8, out_channels=6).to(torch.bfloat16)
    first = torch.randn(1, 4, 16, 16, dtype=torch.bfloat16).contiguous(memory_format=torch.channels_last)
    second = torch.randn(1, 4, 16, 16, dtype=torch.bfloat16).contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        expected = F.relu(layer(torch.cat((first, second), 1))).float()
        torch.testing.assert_close(conv_relu(layer, first, second).float(), expected, atol=0.1, rtol=0.02)


@pytest.mark.filterwarnings("ignore:TF32 acceleration")
def test_autograd_and_disabled_mkldnn_take_the_plain_path():
    layer = conv().requires_grad_(True)
    x = torch.randn(1, 6, 9, 9, requires_grad=True)
    conv_relu(layer, x).sum().backward()
    assert x.grad is not None and layer.weight.grad is not None
    frozen = conv().requires_grad_(False)
    y = torch.randn(1, 6, 9, 9)
    with torch.inference_mode(), torch.backends.mkldnn.flags(enabled=False):
        torch.testing.assert_close(conv_relu(frozen, y), F.relu(frozen(y)))
        torch.testing.assert_close(conv_relu(frozen, y[:, :2], y[:, 2:]), F.relu(frozen(y)))


def test_blocked_weight_copies_follow_weight_changes():
    layer = conv()
    x = torch.randn(1, 6, 12, 12)
    with torch.inference_mode():
        before = conv_relu(layer, x)
        with torch.no_grad():
            layer.weight.mul_(-1.0)  # in place: same storage, new version
        torch.testing.assert_close(conv_relu(layer, x), F.relu(layer(x)), atol=1e-5, rtol=1e-5)
        assert not torch.allclose(conv_relu(layer, x), before)
        drop_packed_weights(layer)
        torch.testing.assert_close(conv_relu(layer, x), F.relu(layer(x)), atol=1e-5, rtol=1e-5)
    assert "weight" in layer.state_dict() and len(layer.state_dict()) == 2, "copies stay out of the state dict"


@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last])
def test_single_output_convolution_matches_pytorch(layout):
    head = nn.Conv2d(16, 1, 3, padding=1).requires_grad_(False)
    x = torch.randn(2, 16, 21, 34).contiguous(memory_format=layout)
    with torch.inference_mode():
        torch.testing.assert_close(single_output_conv3x3(head, x), head(x), atol=1e-5, rtol=1e-5)


def test_blocked_weights_serve_other_shapes_and_replaced_weights():
    layer = conv(in_channels=8, out_channels=6)
    with torch.inference_mode():
        conv_relu(layer, torch.randn(1, 8, 32, 32))  # packed for this shape
        for shape in [(3, 8, 17, 9), (1, 8, 64, 40)]:
            x = torch.randn(shape).contiguous(memory_format=torch.channels_last)
            torch.testing.assert_close(conv_relu(layer, x), F.relu(layer(x)), atol=1e-5, rtol=1e-5)
            torch.testing.assert_close(conv_relu(layer, x[:, :3], x[:, 3:]), F.relu(layer(x)), atol=1e-5, rtol=1e-5)
    layer.weight = nn.Parameter(torch.randn(6, 8, 3, 3), requires_grad=False)
    x = torch.randn(1, 8, 32, 32)
    with torch.inference_mode():
        torch.testing.assert_close(conv_relu(layer, x), F.relu(layer(x)), atol=1e-4, rtol=1e-5)


def test_weights_made_under_inference_mode_are_served():
    """ComfyUI moves models under inference_mode, which makes their weights inference tensors."""
    with torch.inference_mode():
        layer = conv(in_channels=8, out_channels=6).requires_grad_(False)
        layer.weight = nn.Parameter(layer.weight.clone(), requires_grad=False)
        assert layer.weight.is_inference()
        x = torch.randn(1, 8, 16, 16)
        torch.testing.assert_close(conv_relu(layer, x), F.relu(layer(x)), atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(conv_relu(layer, x[:, :3], x[:, 3:]), F.relu(layer(x)), atol=1e-5, rtol=1e-5)
