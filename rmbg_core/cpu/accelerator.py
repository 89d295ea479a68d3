"""Install or remove the CPU accelerator on an IS-Net in one call: :func:`accelerate`, :func:`restore_plain`.

Installing folds BatchNorm into the convolutions (:mod:`.folding`), gives every conv + BatchNorm + ReLU
block, U-block and the network itself an accelerated processor wrapping its plain one
(:mod:`.processors`), and the network a ``buffer_pool`` (:mod:`.buffer_pool`) and a ``winograd`` switch
(False: every layer as a direct convolution). Module names, weights, ``state_dict`` keys and hooks stay
as they are. Before the first installation the private torch ops it rests on are checked
(:mod:`.self_check`); if that fails, the network stays plain (one warning per process).
"""

from __future__ import annotations

import torch
from torch import nn

from .buffer_pool import BufferPool
from .folding import fold_batchnorm
from .kernels import drop_packed_weights
from .processors import AcceleratedISNet, FusedConvBNReLU, PooledResidualUBlock
from .self_check import kernels_ready, nothing_failed


def accelerate(network: nn.Module, dtype: torch.dtype | None = None) -> nn.Module:
    """Install the accelerator on ``network`` (an IS-Net in eval mode) in place; returns it.

    ``dtype``: the dtype it will run in, checked now (default: its current one; others are checked on
    their first forward pass). Idempotent. Leaves the network plain if the self-check fails.
    """
    if network.training:
        raise ValueError("accelerate() folds BatchNorm for inference: call network.eval() first")
    kernels_ready(dtype if dtype is not None else _dtype(network))
    if not nothing_failed():
        return network
    fold_batchnorm(network)
    for module in network.modules():
        processor = getattr(module, "processor", None)
        kind = _accelerated_kind(module)
        if kind is not None and not getattr(processor, "rmbg_accelerated", False):
            module.set_processor(kind(processor))
    if getattr(network, "buffer_pool", None) is None:
        network.buffer_pool = BufferPool()
    if getattr(network, "winograd", None) is None:
        network.winograd = True
    return network


def restore_plain(network: nn.Module) -> nn.Module:
    """Put back every plain processor and drop the accelerator's caches and buffers; returns ``network``.

    The weights stay folded: with identity BatchNorm statistics the plain path computes the same function.
    """
    for module in network.modules():
        processor = getattr(module, "processor", None)
        if getattr(processor, "rmbg_accelerated", False):
            module.set_processor(processor.plain)
    drop_packed_weights(network)
    for name in ("buffer_pool", "winograd"):
        network.__dict__.pop(name, None)
    return network


def is_accelerated(network: nn.Module) -> bool:
    """True when ``network`` computes through the accelerator's processors."""
    return bool(getattr(getattr(network, "processor", None), "rmbg_accelerated", False))


def release_buffers(network: nn.Module, nbytes: int) -> int:
    """Give back pooled buffers for a result of ``nbytes`` (see :meth:`BufferPool.release`); 0 without a pool."""
    pool = getattr(network, "buffer_pool", None)
    return pool.release(nbytes) if pool is not None else 0


def clear_buffers(network: nn.Module) -> None:
    """Give back the activation buffers kept for the next forward pass (none without the accelerator)."""
    pool = getattr(network, "buffer_pool", None)
    if pool is not None:
        pool.clear()


def clear_caches(network: nn.Module) -> None:
    """Free the pooled activation buffers and the weight copies the kernels keep (e.g. before a move)."""
    clear_buffers(network)
    drop_packed_weights(network)


def _accelerated_kind(module: nn.Module) -> type | None:
    """The accelerated processor class for ``module``, recognised by its structure (not its class)."""
    if not callable(getattr(module, "set_processor", None)):
        return None
    if hasattr(module, "conv_s1") and hasattr(module, "bn_s1") and hasattr(module, "relu_s1"):
        return FusedConvBNReLU
    if hasattr(module, "rebnconvin") and hasattr(module, "decoder_level"):
        return PooledResidualUBlock
    if hasattr(module, "conv_in") and hasattr(module, "side_heads"):
        return AcceleratedISNet
    return None


def _dtype(network: nn.Module) -> torch.dtype:
    parameter = next(network.parameters(), None)
    return parameter.dtype if parameter is not None else torch.float32
