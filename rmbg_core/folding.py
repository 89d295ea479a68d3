"""Fold every inference-mode BatchNorm of an IS-Net into the convolution before it, in place.

``bn(conv(x)) = conv'(x)`` with ``w' = w * g / sqrt(var + eps)`` and ``b' = (b - mean) * g / sqrt(var + eps)
+ beta``: one pass over each activation instead of two, and the convolution can then carry the
ReLU too (see :mod:`rmbg_core.kernels`). The statistics are combined in float64 and the
weights scaled in float32 at least. Afterwards each BatchNorm holds identity statistics, so the network's
``state_dict()`` keeps every RMBG-1.4 key and is itself a valid checkpoint computing the same masks
(the original tensors stay in the checkpoint file: :func:`rmbg_core.weights.read_state_dict`).
"""

from __future__ import annotations

import torch
from torch import nn

from .network import ConvBNReLU


@torch.no_grad()
def fold_batchnorm(network: nn.Module) -> nn.Module:
    """Fold the BatchNorm of every :class:`ConvBNReLU` in ``network`` into its convolution; returns it.

    Idempotent: blocks already folded are left alone. Loading a state dict into a block unfolds it
    (it applies its BatchNorm again), so a folded network can still load any checkpoint.
    """
    for block in network.modules():
        # Matched by type name: transformers' remote code may load network.py twice (once beside the
        # model class, once beside the pipeline), giving two ConvBNReLU classes.
        if type(block).__name__ == ConvBNReLU.__name__ and not block.batchnorm_folded:
            fold_into_convolution(block.conv_s1, block.bn_s1)
            block.batchnorm_folded = True
    return network


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
