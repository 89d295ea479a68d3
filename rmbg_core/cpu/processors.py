"""The accelerator's processors: IS-Net's plain blocks computed by the fused kernels, into the buffer pool.

Each wraps the plain processor it replaces (``plain``, what :func:`~rmbg_core.cpu.accelerator.restore_plain`
puts back). The U-block and the network run the plain wiring (their ``run``) with pooled steps; only
the arithmetic changes, never which modules run. Where a module's own hooks would see the difference,
the plain path runs instead: a conv + BatchNorm + ReLU block whose convolution, BatchNorm or ReLU
carries a forward hook, ``conv_in`` or a side head with a hook, and a stage with a hook (called through
``stage(...)`` then, so the hook sees its inputs). Blocks are recognised by structure, never by class.
"""

from __future__ import annotations

import torch
from torch import nn

from .buffer_pool import pooled_empty
from .folding import batchnorm_is_identity
from .kernels import conv_relu, convolve, downsample, single_output_conv3x3, upsample_like, winograd_enabled
from .private_ops import PrivateOps
from .self_check import pool_ready


class FusedConvBNReLU:
    """``relu(conv(cat(inputs)))`` in fused oneDNN calls (no concatenation built; Winograd where it pays),
    once the block's BatchNorm is folded (the identity). The plain processor runs instead while the
    BatchNorm is not the identity (a checkpoint loaded since), in training mode, or when the block's
    convolution, BatchNorm or ReLU carries a forward hook."""

    rmbg_accelerated = True

    def __init__(self, plain: object) -> None:
        self.plain = plain
        # (the BatchNorm tensors' addresses and versions, whether they were the identity then)
        self._checked: tuple[tuple, bool] = ((), False)

    def __call__(self, block: nn.Module, *inputs: torch.Tensor) -> torch.Tensor:
        if (block.training or PrivateOps.has_forward_hooks(block.conv_s1, block.bn_s1, block.relu_s1)
                or not self._folded(block.bn_s1)):
            return self.plain(block, *inputs)
        return conv_relu(block.conv_s1, *inputs)

    def _folded(self, bn: nn.BatchNorm2d) -> bool:
        """Whether ``bn`` is the identity, verified again only when one of its tensors changed."""
        key = tuple((t.data_ptr(), PrivateOps.version(t)) for t in (bn.weight, bn.bias, bn.running_mean, bn.running_var))
        checked_key, identity = self._checked
        if key != checked_key:
            identity = batchnorm_is_identity(bn)
            self._checked = (key, identity)
        return identity


class _PooledSteps:
    """The U-block's steps between modules: resampling into the buffer pool, the residual added in place."""

    downsample = staticmethod(downsample)
    upsample_like = staticmethod(upsample_like)

    @staticmethod
    def add(x: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
        return x + residual if x.requires_grad or residual.requires_grad else x.add_(residual)


class _PooledStepsKeepingOutputs(_PooledSteps):
    """As :class:`_PooledSteps`, but the last decoder block's output, which a hook may hold, is not overwritten."""

    @staticmethod
    def add(x: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
        return x + residual


class PooledResidualUBlock:
    """The plain U-block wiring with pooled resampling and an in-place residual sum."""

    rmbg_accelerated = True

    def __init__(self, plain: object) -> None:
        self.plain = plain

    def __call__(self, block: nn.Module, *inputs: torch.Tensor) -> torch.Tensor:
        return self.run(block, list(inputs))

    def run(self, block: nn.Module, inputs: list[torch.Tensor]) -> torch.Tensor:
        """The block on ``inputs``, a list it empties once read (see the plain processor's ``run``)."""
        last = block.decoder_level(1)
        hooked = PrivateOps.has_forward_hooks(last, last.conv_s1, last.bn_s1, last.relu_s1)
        return self.plain.run(block, inputs, steps=_PooledStepsKeepingOutputs if hooked else _PooledSteps)


class AcceleratedISNet:
    """The plain network wiring with ``conv_in``, the side heads and the resampling on the fused kernels,
    every large activation in the network's ``buffer_pool`` (CPU, no autograd), Winograd as
    ``network.winograd`` says, and each stage without hooks run on an input list it empties, so the
    stage input is freed as soon as its first block has read it."""

    rmbg_accelerated = True

    def __init__(self, plain: object) -> None:
        self.plain = plain

    def __call__(self, net: nn.Module, x: torch.Tensor, side_outputs: bool = False) -> torch.Tensor | list[torch.Tensor]:
        with winograd_enabled(getattr(net, "winograd", True)):
            pool = getattr(net, "buffer_pool", None)
            if pool is None or torch.is_grad_enabled() or not pool_ready():
                return self.plain.run(net, x, side_outputs, steps=self)
            with pool.active(x):
                return self.plain.run(net, x, side_outputs, steps=self)

    downsample = staticmethod(downsample)
    upsample_like = staticmethod(upsample_like)

    @staticmethod
    def convolve(conv: nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
        return conv(x) if PrivateOps.has_forward_hooks(conv) else convolve(conv, x)

    @staticmethod
    def stage(stage: nn.Module, inputs: list[torch.Tensor]) -> torch.Tensor:
        # Not through stage(...), whose call frames would hold the inputs until the stage returns: with no
        # hook on the stage, nothing but those references differs.
        run = getattr(stage.processor, "run", None)
        if run is None or PrivateOps.has_forward_hooks(stage):
            return stage(*inputs)
        return run(stage, inputs)

    def side_map(self, head: nn.Conv2d, feature: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        if PrivateOps.has_forward_hooks(head):
            return self.plain.side_map(head, feature, like)
        if feature.dtype != head.weight.dtype:  # float32 heads under a half-precision body
            converted = pooled_empty(feature.shape, head.weight.dtype)
            feature = feature.to(head.weight.dtype) if converted is None else converted.copy_(feature)
        return torch.sigmoid(upsample_like(single_output_conv3x3(head, feature), like))
