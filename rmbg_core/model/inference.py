"""An IS-Net made ready for inference, the one recipe ``RMBGModel``, the transformers pipeline and
``load_pipeline`` share: eval mode without gradients, the CPU accelerator on or off, device and dtype,
side heads that stay float32 under a half-precision body, channels-last weights on CUDA.
"""

from __future__ import annotations

import torch

from ..cpu.accelerator import accelerate as install_accelerator
from ..cpu.accelerator import clear_buffers, clear_caches, release_buffers, restore_plain
from ..cpu.settings import resolve_accelerate
from .network import ISNet

__all__ = ["HALF_DTYPES", "clear_buffers", "prepare_network", "release_buffers", "set_head_dtype", "share_weights"]

# Under these body dtypes the side heads (a 64-to-1 convolution and the sigmoid) stay float32: in
# bfloat16 the sigmoid near 1 has a resolution of 1/256, a whole grey level of the mask (the measured
# error on the fixture photos is in benchmarks/README.md), for well under 1% of the work.
HALF_DTYPES = (torch.float16, torch.bfloat16)


def prepare_network(network: ISNet, *, device: str | torch.device, dtype: torch.dtype,
                    accelerate: bool | None = None) -> ISNet:
    """Make ``network`` ready for inference in place and return it.

    Eval mode, no gradients; the CPU accelerator installed (``accelerate`` True, or None with
    ``RMBG_ACCELERATE`` unset; BatchNorm is folded before any cast, at the network's current precision)
    or removed (False); caches and pooled buffers dropped, weights moved to ``device`` and cast to
    ``dtype`` (channels-last on CUDA, where cuDNN prefers it; on the CPU oneDNN keeps its own blocked
    copies); side heads float32 under a float16/bfloat16 body. Calling it again with the same arguments
    changes nothing.
    """
    device = torch.device(device)
    network.eval().requires_grad_(False)
    if resolve_accelerate(accelerate):
        install_accelerator(network, dtype)
    else:
        restore_plain(network)
    clear_caches(network)
    layout = torch.channels_last if device.type == "cuda" else torch.contiguous_format
    network.to(device=device, dtype=dtype, memory_format=layout)
    set_head_dtype(network, dtype)
    return network


def set_head_dtype(network: ISNet, body_dtype: torch.dtype) -> None:
    """Side heads in float32 under a half-precision body (see ``HALF_DTYPES``), else in the body's dtype."""
    head_dtype = torch.float32 if body_dtype in HALF_DTYPES else body_dtype
    for head in network.side_heads():
        head.to(head_dtype)


def share_weights(network: ISNet) -> ISNet:
    """A new network of the same structure over ``network``'s very tensors (nothing copied; plain
    processors, no hooks): moving or casting either gives that one new tensors and leaves the other be."""
    with torch.device("meta"):
        twin = type(network)(network.conv_in.in_channels, network.side1.out_channels)
    twin.load_state_dict(network.state_dict(), strict=True, assign=True)
    return twin

