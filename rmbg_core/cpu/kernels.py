"""Fused inference kernels for the CPU: convolution + bias + ReLU (+ a second input) in oneDNN calls.

PyTorch's own ``conv2d`` then ``relu`` makes two passes over every activation (and IS-Net's are large:
64 channels at 512x512 is 64 MB); oneDNN applies the ReLU while the convolution result is still in
cache. A convolution over a channel concatenation (every U-Net decoder step) is computed as two
convolutions over the parts, the second accumulating into the first's output, so the concatenated
tensor is never built. Weights are reordered once into oneDNN's blocked layout and kept beside the
module (oneDNN would otherwise reorder every weight on every call, a large share of a float32 forward
pass); the module's own parameters stay as they are, so ``state_dict``, ``.to()`` and anything that
manages the module see an ordinary ``nn.Conv2d``. Activations go into the buffer pool of the running
network when there is one (:mod:`rmbg_core.cpu.buffer_pool`). The ops are the ones ``torch.compile``
emits for CPU convolutions, called directly (through :class:`~rmbg_core.cpu.private_ops.PrivateOps`) so
there is no compile step. In float32 the deep layers where it is faster run as Winograd F(2x2, 3x3)
convolutions instead (:mod:`rmbg_core.cpu.winograd`). Anything they do not cover (CUDA, MPS, float16 on
CPU, autograd, mkldnn disabled, a failed self-check) takes the plain PyTorch path, which computes the
same function.
"""

from __future__ import annotations

import contextlib
import contextvars
import weakref
from typing import Callable, Iterator

import torch
import torch.nn.functional as F
from torch import nn

from .buffer_pool import empty, pooled_empty
from .private_ops import PrivateOps
from .self_check import kernels_ready
from .winograd import band_rows, transform_weights, winograd_conv_relu, winograd_suits

# Attribute of a Conv2d holding its _PackedWeights: plain Python state, invisible to state_dict and .to().
_PACKED = "_onednn_packed_weights"
_WINOGRAD = "_winograd_weights"
# Whether float32 convolutions that suit it take the Winograd path (the accelerated network sets it per forward).
_USE_WINOGRAD: contextvars.ContextVar[bool] = contextvars.ContextVar("rmbg_winograd", default=True)


class _PackedWeights:
    """Blocked weight copies of one convolution and what they were made from (a weak ref and a key)."""

    def __init__(self, weight: torch.Tensor | None = None, key: tuple | None = None,
                 parts: tuple[torch.Tensor, ...] = ()) -> None:
        self.weight = weakref.ref(weight) if weight is not None else None
        self.key = key
        self.parts = parts

    def __reduce__(self) -> tuple:
        # Copied or pickled modules start without copies (opaque oneDNN tensors cannot be copied).
        return (_PackedWeights, ())


def onednn_fusion_available(dtype: torch.dtype) -> bool:
    """True when this torch build and CPU can run the fused oneDNN convolution in ``dtype`` and its private
    ops passed their self-check (:mod:`rmbg_core.cpu.self_check`)."""
    return kernels_ready(dtype)


def _fusable(conv: nn.Conv2d, *inputs: torch.Tensor) -> bool:
    dtype = conv.weight.dtype
    # The fused ops have no autograd: under no_grad/inference_mode (or with nothing requiring grad) they apply.
    grad = torch.is_grad_enabled() and (conv.weight.requires_grad or any(x.requires_grad for x in inputs))
    return (not grad and conv.weight.device.type == "cpu" and conv.groups == 1
            and conv.padding_mode == "zeros" and PrivateOps.onednn_enabled()
            and all(x.device.type == "cpu" and x.dtype == dtype for x in inputs)
            and kernels_ready(dtype))


def packed_weights(conv: nn.Conv2d, *inputs: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """``conv``'s weight in oneDNN's blocked layout, split by input channels like ``inputs``; cached.

    The copies are made for the first input shape seen; oneDNN adapts them to other shapes. They are
    remade whenever the weight changes (another tensor, other storage, an in-place update, another
    dtype), so loading, folding or casting needs no care; :func:`drop_packed_weights` frees them.
    """
    def pack(share: torch.Tensor, index: int) -> torch.Tensor:
        return PrivateOps.reorder_weight(share, conv.padding, conv.stride, conv.dilation, inputs[index].shape)
    return _cached_parts(conv, _PACKED, tuple(x.shape[1] for x in inputs), pack)


def winograd_weights(conv: nn.Conv2d, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """The Winograd transforms of ``conv``'s whole weight (:func:`~rmbg_core.cpu.winograd.transform_weights`)
    for inputs like ``x``; cached and remade like :func:`packed_weights`."""
    height, width = x.shape[2:]
    tiles = band_rows(conv.in_channels, conv.out_channels, height, width, x.element_size()) * (width // 2)
    return _cached_parts(conv, _WINOGRAD, (conv.in_channels,), lambda weight, _: transform_weights(weight, tiles),
                         layout=tiles)[0]


def _cached_parts(conv: nn.Conv2d, attribute: str, splits: tuple[int, ...],
                  pack: Callable[[torch.Tensor, int], object], layout: object = None) -> tuple:
    """``pack(share, index)`` for each share of ``conv``'s weight split by input channels like ``splits``,
    kept in ``conv.__dict__[attribute]`` while the weight (and ``layout``, anything else the packing
    depends on) is the same."""
    weight = conv.weight
    # Inference tensors (weights moved or cast under inference_mode, as ComfyUI does) have no version
    # counter: for them a replaced tensor is noticed, an in-place update is not.
    key = (weight.data_ptr(), PrivateOps.version(weight), weight.dtype, splits, layout)
    cached = conv.__dict__.get(attribute)
    if cached is not None and cached.weight is not None and cached.weight() is weight and cached.key == key:
        return cached.parts
    parts, start = [], 0
    for index, channels in enumerate(splits):
        parts.append(pack(weight[:, start:start + channels].contiguous(), index))
        start += channels
    conv.__dict__[attribute] = _PackedWeights(weight, key, tuple(parts))
    return tuple(parts)


def drop_packed_weights(network: nn.Module) -> None:
    """Free the blocked and Winograd weight copies of every convolution in ``network`` (e.g. before moving it)."""
    for module in network.modules():
        module.__dict__.pop(_PACKED, None)
        module.__dict__.pop(_WINOGRAD, None)


def conv_output_shape(conv: nn.Conv2d, x: torch.Tensor) -> tuple[int, ...]:
    """(B, C, H, W) of ``conv(x)``."""
    size = [(length + 2 * pad - dil * (kernel - 1) - 1) // step + 1 for length, pad, dil, kernel, step
            in zip(x.shape[2:], conv.padding, conv.dilation, conv.kernel_size, conv.stride)]
    return (x.shape[0], conv.out_channels, *size)


def _onednn_conv(conv: nn.Conv2d, x: torch.Tensor, weight: torch.Tensor, unary: str | None) -> torch.Tensor:
    """``unary(conv(x))`` with blocked ``weight`` (all of ``conv``'s or its share for ``x``) and the bias."""
    return _conv_into_pool(x, weight, conv.bias, (conv.padding, conv.stride, conv.dilation),
                           conv_output_shape(conv, x), unary)


def _conv_into_pool(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, geometry: tuple,
                    out_shape: tuple[int, ...], unary: str | None) -> torch.Tensor:
    """One oneDNN convolution (``geometry``: padding, stride, dilation) with an optional ReLU.

    Written into a buffer of the active :class:`~rmbg_core.cpu.buffer_pool.BufferPool` when there is one:
    the buffer is zeroed and the convolution (with its bias) added to it in place, the same sum.
    """
    out = pooled_empty(out_shape, x.dtype)
    if out is None:
        return PrivateOps.convolution(x, weight, bias, *geometry, unary)
    out.zero_()  # a plain memset: faster than writing the bias, which the convolution adds anyway
    return PrivateOps.convolution_add_(out, x, weight, bias, *geometry, unary)


def convolve(conv: nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
    """``conv(x)`` through the same oneDNN path as :func:`conv_relu` when possible (no activation)."""
    if _fusable(conv, x):
        weight, = packed_weights(conv, x)
        return _onednn_conv(conv, x, weight, None)
    return conv(x)


@contextlib.contextmanager
def winograd_enabled(enabled: bool) -> Iterator[None]:
    """Let float32 CPU convolutions that suit it use Winograd F(2x2, 3x3) in this block (this thread or task)."""
    token = _USE_WINOGRAD.set(enabled)
    try:
        yield
    finally:
        _USE_WINOGRAD.reset(token)


def _winograd(conv: nn.Conv2d, *inputs: torch.Tensor) -> torch.Tensor | None:
    """``relu(conv(cat(inputs, 1)))`` by :mod:`rmbg_core.cpu.winograd` when enabled and it suits the layer, else None."""
    x = inputs[0]
    if not (_USE_WINOGRAD.get() and x.dtype == torch.float32
            and winograd_suits(conv, sum(i.shape[1] for i in inputs), x.shape[2], x.shape[3])):
        return None
    return winograd_conv_relu(inputs, winograd_weights(conv, x), conv.bias)


def conv_relu(conv: nn.Conv2d, *inputs: torch.Tensor) -> torch.Tensor:
    """``relu(conv(cat(inputs, 1)))``, fused into oneDNN calls on the CPU when possible (Winograd for deep layers).

    Several inputs are never concatenated: ``conv(first)`` with the first input channels' weights and
    the bias, then each further part's convolution accumulated into that buffer in place, then ReLU:
    the same sum in another order.
    """
    if _fusable(conv, *inputs):
        out = _winograd(conv, *inputs)
        if out is not None:
            return out
        weights = packed_weights(conv, *inputs)
        if len(inputs) == 1:
            return _onednn_conv(conv, inputs[0], weights[0], "relu")
        out = _onednn_conv(conv, inputs[0], weights[0], None)
        for index in range(1, len(inputs)):
            last = index == len(inputs) - 1
            out = PrivateOps.convolution_add_(out, inputs[index], weights[index], None, conv.padding, conv.stride,
                                              conv.dilation, "relu" if last else None)
        return out
    return F.relu(conv(inputs[0] if len(inputs) == 1 else torch.cat(inputs, 1)), inplace=True)


def single_output_conv3x3(conv: nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
    """``conv(x)`` for a 3x3, stride-1, padding-1 convolution with one output channel (a side head).

    oneDNN runs one-output convolutions at a few percent of its speed, so on the CPU this computes the
    nine taps' channel sums as one 1x1 convolution with nine outputs, then adds the nine maps, shifted.
    """
    if not (_fusable(conv, x) and conv.out_channels == 1 and conv.kernel_size == (3, 3)
            and conv.stride == (1, 1) and conv.padding == (1, 1) and conv.dilation == (1, 1)):
        return conv(x)
    batch, channels, height, width = x.shape
    taps = conv.weight[0].permute(1, 2, 0).reshape(9, channels, 1, 1).contiguous()
    per_tap = _conv_into_pool(x, taps, None, ((0, 0), (1, 1), (1, 1)), (batch, 9, height, width), None)
    out = empty((batch, 1, height, width), x.dtype, channels_last=False)
    torch.add(per_tap[:, 4:5], conv.bias.reshape(1, 1, 1, 1), out=out)  # the centre tap covers every pixel
    for tap in (0, 1, 2, 3, 5, 6, 7, 8):
        # Tap (row, column) reads the input shifted by (row - 1, column - 1); zero padding outside.
        dy, dx = tap // 3 - 1, tap % 3 - 1
        target = out[:, :, max(0, -dy):height - max(0, dy), max(0, -dx):width - max(0, dx)]
        target += per_tap[:, tap:tap + 1, max(0, dy):height - max(0, -dy), max(0, dx):width - max(0, -dx)]
    return out


def upsample_like(x: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """:func:`rmbg_core.model.network.upsample_like` (bilinear, align_corners=False) into a pooled buffer when one is active."""
    out = pooled_empty((*x.shape[:2], *like.shape[2:]), x.dtype)
    if out is None:
        return F.interpolate(x, size=like.shape[2:], mode="bilinear", align_corners=False)
    return torch.ops.aten.upsample_bilinear2d.out(x, list(like.shape[2:]), False, None, None, out=out)


def downsample(x: torch.Tensor) -> torch.Tensor:
    """:func:`rmbg_core.model.network.downsample` (2x2 max pooling, ceil mode) into a pooled buffer when one is
    active and the size is even."""
    height, width = x.shape[2:]
    out = pooled_empty((*x.shape[:2], height // 2, width // 2), x.dtype) if height % 2 == width % 2 == 0 else None
    if out is None:
        return F.max_pool2d(x, 2, stride=2, ceil_mode=True)
    # Even sizes (no ceil padding): the maximum of the four pixels of each 2x2 cell, into a reused buffer.
    top, bottom = x[:, :, 0::2], x[:, :, 1::2]
    torch.maximum(top[..., 0::2], top[..., 1::2], out=out)
    torch.maximum(out, bottom[..., 0::2], out=out)
    return torch.maximum(out, bottom[..., 1::2], out=out)
