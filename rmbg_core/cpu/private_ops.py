"""Every private torch API the accelerator uses, each behind one small function of :class:`PrivateOps`.

These are not part of torch's public contract and may change in any release; the accelerator calls
them only as ``PrivateOps.name(...)``, and :mod:`rmbg_core.cpu.self_check` runs each once against its
public equivalent before the accelerator is switched on. Nothing here catches errors: the self-check
does.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn
from torch.nn.modules import module as _module_globals


class PrivateOps:
    """The private ops, as static methods (one namespace, so a test can replace any of them)."""

    @staticmethod
    def onednn_built() -> bool:
        """True when this torch build has oneDNN (mkldnn) for the CPU."""
        return torch.backends.mkldnn.is_available()

    @staticmethod
    def onednn_enabled() -> bool:
        """False inside ``torch.backends.mkldnn.flags(enabled=False)``."""
        return bool(torch.backends.mkldnn.enabled)

    @staticmethod
    def onednn_bfloat16_supported() -> bool:
        """True when oneDNN runs bfloat16 natively on this CPU."""
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())

    @staticmethod
    def convolution(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, padding: Sequence[int],
                    stride: Sequence[int], dilation: Sequence[int], unary: str | None) -> torch.Tensor:
        """``unary(conv2d(x, weight, bias))`` in one oneDNN call (``unary``: None or "relu"); ``weight`` plain
        or from :meth:`reorder_weight`. The result is channels-last."""
        return torch.ops.mkldnn._convolution_pointwise(x, weight, bias, list(padding), list(stride),
                                                       list(dilation), 1, unary or "none", [], None)

    @staticmethod
    def convolution_add_(out: torch.Tensor, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
                         padding: Sequence[int], stride: Sequence[int], dilation: Sequence[int],
                         unary: str | None) -> torch.Tensor:
        """``out = unary(out + conv2d(x, weight, bias))``, written into ``out`` (channels-last); returns it."""
        return torch.ops.mkldnn._convolution_pointwise_.binary(out, x, weight, bias, list(padding), list(stride),
                                                               list(dilation), 1, "add", None, unary, [], None)

    @staticmethod
    def reorder_weight(weight: torch.Tensor, padding: Sequence[int], stride: Sequence[int],
                       dilation: Sequence[int], input_shape: Sequence[int]) -> torch.Tensor:
        """``weight`` in oneDNN's blocked layout for inputs shaped like ``input_shape`` (an opaque tensor that
        only :meth:`convolution` and :meth:`convolution_add_` read)."""
        return torch.ops.mkldnn._reorder_convolution_weight(weight, list(padding), list(stride), list(dilation), 1,
                                                            list(input_shape))

    @staticmethod
    def storage_use_count(tensor: torch.Tensor) -> int:
        """How many tensors (views included) share ``tensor``'s storage."""
        return torch._C._storage_Use_Count(tensor.untyped_storage()._cdata)

    @staticmethod
    def version(tensor: torch.Tensor) -> int | None:
        """``tensor``'s version counter (bumped by every in-place write); None for inference tensors."""
        return None if tensor.is_inference() else tensor._version

    @staticmethod
    def has_forward_hooks(*modules: nn.Module) -> bool:
        """True when any of ``modules`` has a forward hook or pre-hook, or a global one is registered."""
        if _module_globals._global_forward_hooks or _module_globals._global_forward_pre_hooks:
            return True
        return any(module._forward_hooks or module._forward_pre_hooks for module in modules)
