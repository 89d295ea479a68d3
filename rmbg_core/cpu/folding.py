"""Fold every inference-mode BatchNorm of an IS-Net into the convolution before it, in place.

``bn(conv(x)) = conv'(x)`` with ``w' = w * g / sqrt(var + eps)`` and ``b' = (b - mean) * g / sqrt(var + eps)
+ beta``: one pass over each activation instead of two, and the convolution can then carry the
ReLU too (see :mod:`rmbg_core.cpu.kernels`). The statistics are combined in float64 and the
weights scaled in float32 at least. Afterwards each BatchNorm holds identity statistics, so the network's
``state_dict()`` keeps every RMBG-1.4 key and is itself a valid checkpoint computing the same masks
(the original tensors stay in the checkpoint file: :func:`rmbg_core.model.weights.read_state_dict`).

Blocks are found by structure (a ``conv_s1`` convolution followed by a ``bn_s1`` BatchNorm), never by
class: transformers' remote code may import the network module twice, giving two classes of one block.
Whether a block is folded is read from its BatchNorm (identity statistics), so loading a checkpoint into
a folded network simply makes its blocks unfolded again.
"""

from __future__ import annotations

from typing import Iterator

import torch
from torch import nn


def conv_bn_blocks(network: nn.Module) -> Iterator[nn.Module]:
    """Every module of ``network`` holding a ``conv_s1`` convolution and its ``bn_s1`` BatchNorm."""
    for module in network.modules():
        if isinstance(getattr(module, "conv_s1", None), nn.Conv2d) and isinstance(
                getattr(module, "bn_s1", None), nn.BatchNorm2d):
            yield module


@torch.no_grad()
def fold_batchnorm(network: nn.Module) -> nn.Module:
    """Fold the BatchNorm of every conv + BatchNorm block of ``network`` into its convolution; returns it.

    Idempotent: blocks whose BatchNorm is already the identity are left alone (no write).
    """
    for block in conv_bn_blocks(network):
        if not batchnorm_is_identity(block.bn_s1):
            fold_into_convolution(block.conv_s1, block.bn_s1)
    return network


def batchnorm_is_identity(bn: nn.BatchNorm2d) -> bool:
    """True when ``bn`` in eval mode returns its input: the statistics :func:`fold_into_convolution` leaves."""
    if bn.running_mean is None or bn.running_var is None or not bn.affine:
        return False
    scale = (1.0 + bn.eps) ** 0.5
    return bool(torch.all(bn.running_mean == 0) and torch.all(bn.running_var == 1) and torch.all(bn.bias == 0)
                and torch.equal(bn.weight, torch.full_like(bn.weight, scale)))


def fold_into_convolution(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> None:
    """Scale ``conv``'s weights and shift its bias by ``bn``'s statistics; set ``bn`` to the identity."""
    scale = bn.weight.double() / torch.sqrt(bn.running_var.double() + bn.eps)
    bias = conv.bias.double() if conv.bias is not None else torch.zeros_like(scale)
    folded_bias = (bias - bn.running_mean.double()) * scale + bn.bias.double()
    weight = conv.weight
    work = weight.dtype if weight.dtype in (torch.float32, torch.float64) else torch.float32
    weight.copy_(weight.to(work).mul_(scale.to(work).reshape(-1, 1, 1, 1)))
    if conv.bias is None:
        conv.bias = nn.Parameter(folded_bias.to(conv.weight.dtype), requires_grad=False)
    else:
        conv.bias.copy_(folded_bias)
    bn.running_mean.zero_()
    bn.running_var.fill_(1.0)
    bn.weight.fill_((1.0 + bn.eps) ** 0.5)
    bn.bias.zero_()
