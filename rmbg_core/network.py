"""IS-Net, the saliency network behind BRIA RMBG-1.4, written so a real checkpoint loads with strict keys.

Module names (``stage1.rebnconv1.conv_s1.weight`` ...) are those of BRIA's ``briarmbg.py``; the five
residual U-block classes of the original collapse into one, parametrised by height and dilation.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .buffer_pool import BufferPool, pooled_empty
from .kernels import conv_relu, conv_relu_joined, convolve, single_output_conv3x3, winograd_enabled

# (name, height, in_channels, mid_channels, out_channels, dilated) of each residual U-block, in the order
# they run: six encoder stages, then five decoder stages.
ENCODER_STAGES = (
    ("stage1", 7, 64, 32, 64, False),
    ("stage2", 6, 64, 32, 128, False),
    ("stage3", 5, 128, 64, 256, False),
    ("stage4", 4, 256, 128, 512, False),
    ("stage5", 4, 512, 256, 512, True),
    ("stage6", 4, 512, 256, 512, True),
)
DECODER_STAGES = (
    ("stage5d", 4, 1024, 256, 512, True),
    ("stage4d", 4, 1024, 128, 256, False),
    ("stage3d", 5, 512, 64, 128, False),
    ("stage2d", 6, 256, 32, 64, False),
    ("stage1d", 7, 128, 16, 64, False),
)
# Input channels of the side heads side1..side6 (decoder outputs stage1d..stage5d, then stage6).
SIDE_CHANNELS = (64, 64, 128, 256, 512, 512)


def upsample_like(x: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Bilinearly resize ``x`` to the spatial size of ``like`` (align_corners=False, as the reference)."""
    out = pooled_empty((*x.shape[:2], *like.shape[2:]), x.dtype)
    if out is None:
        return F.interpolate(x, size=like.shape[2:], mode="bilinear", align_corners=False)
    return torch.ops.aten.upsample_bilinear2d.out(x, list(like.shape[2:]), False, None, None, out=out)


def downsample(x: torch.Tensor) -> torch.Tensor:
    """2x2 max pooling with ceil mode, as between every stage of IS-Net."""
    height, width = x.shape[2:]
    out = pooled_empty((*x.shape[:2], height // 2, width // 2), x.dtype) if height % 2 == width % 2 == 0 else None
    if out is None:
        return F.max_pool2d(x, 2, stride=2, ceil_mode=True)
    # Even sizes (no ceil padding): the maximum of the four pixels of each 2x2 cell, into a reused buffer.
    top, bottom = x[:, :, 0::2], x[:, :, 1::2]
    torch.maximum(top[..., 0::2], top[..., 1::2], out=out)
    torch.maximum(out, bottom[..., 0::2], out=out)
    return torch.maximum(out, bottom[..., 1::2], out=out)


class ConvBNReLU(nn.Module):
    """3x3 convolution, BatchNorm, ReLU (``REBNCONV`` in the original; attribute names are key names).

    Once :func:`rmbg_core.folding.fold_batchnorm` has folded the BatchNorm into the convolution
    (``batchnorm_folded``), the block is one fused convolution + ReLU.
    """

    def __init__(self, in_channels: int, out_channels: int, dilation: int = 1) -> None:
        super().__init__()
        self.conv_s1 = nn.Conv2d(in_channels, out_channels, 3, padding=dilation, dilation=dilation)
        self.bn_s1 = nn.BatchNorm2d(out_channels)
        self.relu_s1 = nn.ReLU(inplace=True)
        self.batchnorm_folded = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.batchnorm_folded:
            return conv_relu(self.conv_s1, x)
        return self.relu_s1(self.bn_s1(self.conv_s1(x)))

    def joined(self, first: torch.Tensor, second: torch.Tensor) -> torch.Tensor:
        """``self(torch.cat((first, second), 1))``; once folded, without building the concatenation."""
        if self.batchnorm_folded:
            return conv_relu_joined(self.conv_s1, first, second)
        return self(torch.cat((first, second), 1))

    def _load_from_state_dict(self, *args, **kwargs) -> None:
        # Loaded tensors are a checkpoint's own: its BatchNorm applies again until folded anew.
        self.batchnorm_folded = False
        super()._load_from_state_dict(*args, **kwargs)


class ResidualUBlock(nn.Module):
    """Residual U-block RSU-``height``: a small U-Net whose output is added to its input projection.

    Pooled blocks (RSU7..RSU4) halve the resolution between encoder levels and dilate only the
    bottom convolution; ``dilated`` blocks (RSU4F) keep the resolution and dilate by 1, 2, 4, 8.
    """

    def __init__(self, height: int, in_channels: int, mid_channels: int, out_channels: int,
                 dilated: bool = False) -> None:
        super().__init__()
        self.height = height
        self.dilated = dilated
        self.rebnconvin = ConvBNReLU(in_channels, out_channels)
        for level in range(1, height + 1):
            level_in = out_channels if level == 1 else mid_channels
            self.add_module(f"rebnconv{level}", ConvBNReLU(level_in, mid_channels, self._dilation(level)))
        for level in range(height - 1, 0, -1):
            level_out = out_channels if level == 1 else mid_channels
            self.add_module(f"rebnconv{level}d",
                            ConvBNReLU(2 * mid_channels, level_out, self._dilation(level)))

    def _dilation(self, level: int) -> int:
        if self.dilated:
            return 2 ** (level - 1)
        return 2 if level == self.height else 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.run([x])

    def run(self, inputs: list[torch.Tensor]) -> torch.Tensor:
        """The block on ``[x]``, or on ``[deeper, skip]`` (a decoder stage: ``deeper`` upsampled to
        ``skip``'s size and concatenated with it). The list is emptied, so the (large) block input is
        freed as soon as the first convolution has read it instead of living through the whole block.
        """
        pooled = not self.dilated
        if len(inputs) == 1:
            residual = self.rebnconvin(inputs.pop())
        else:
            upsampled = upsample_like(inputs[0], inputs[1])
            skip = inputs.pop()
            inputs.clear()
            residual = self.rebnconvin.joined(upsampled, skip)
            del upsampled, skip
        skips = []
        hx = residual
        for level in range(1, self.height):
            hx = getattr(self, f"rebnconv{level}")(hx)
            skips.append(hx)
            if pooled and level < self.height - 1:
                hx = downsample(hx)
        hx = getattr(self, f"rebnconv{self.height}")(hx)
        for level in range(self.height - 1, 0, -1):
            hx = getattr(self, f"rebnconv{level}d").joined(hx, skips.pop())
            if pooled and level > 1:
                hx = upsample_like(hx, skips[-1])
        return hx + residual if hx.requires_grad else hx.add_(residual)


class ISNet(nn.Module):
    """IS-Net (DIS) as used by RMBG-1.4: 3-channel image in, saliency map(s) in [0, 1] out.

    ``forward`` returns the main map ``(B, 1, H, W)``; with ``side_outputs=True`` it returns all six
    side maps, main first, as BRIA's model does (the training-time deep supervision outputs).
    Inference on the CPU keeps its activation buffers in ``buffer_pool`` for the next call of the
    same shape (see :mod:`rmbg_core.buffer_pool`; ``buffer_pool.clear()`` frees them), and in float32
    computes its deep 3x3 layers as Winograd convolutions unless ``winograd`` is set to False.
    """

    def __init__(self, in_channels: int = 3, out_channels: int = 1) -> None:
        super().__init__()
        self.conv_in = nn.Conv2d(in_channels, 64, 3, stride=2, padding=1)
        for name, height, cin, cmid, cout, dilated in ENCODER_STAGES + DECODER_STAGES:
            self.add_module(name, ResidualUBlock(height, cin, cmid, cout, dilated))
        for index, channels in enumerate(SIDE_CHANNELS, start=1):
            self.add_module(f"side{index}", nn.Conv2d(channels, out_channels, 3, padding=1))
        self.buffer_pool = BufferPool()
        # Float32 CPU inference runs the deep 3x3 layers as Winograd F(2x2, 3x3) (rmbg_core.winograd);
        # False: every layer as a direct convolution.
        self.winograd = True

    def forward(self, x: torch.Tensor, side_outputs: bool = False) -> torch.Tensor | list[torch.Tensor]:
        with winograd_enabled(self.winograd):
            if torch.is_grad_enabled():
                return self._forward(x, side_outputs)
            with self.buffer_pool.active(x):
                return self._forward(x, side_outputs)

    def _forward(self, x: torch.Tensor, side_outputs: bool) -> torch.Tensor | list[torch.Tensor]:
        # Stages take their inputs in a list they empty (ResidualUBlock.run): every activation is
        # referenced only while the U-Net still needs it, which bounds peak memory on large batches.
        encoded: list[torch.Tensor] = []
        for index, (name, *_) in enumerate(ENCODER_STAGES):
            inputs = [downsample(encoded[-1]) if index else convolve(self.conv_in, x)]
            encoded.append(getattr(self, name).run(inputs))
        hx = encoded.pop()
        decoded = [hx] if side_outputs else []
        for name, *_ in DECODER_STAGES:
            inputs = [hx, encoded.pop()]
            del hx
            hx = getattr(self, name).run(inputs)
            if side_outputs:
                decoded.append(hx)
        if not side_outputs:
            return self._side_map(self.side1, hx, x)
        decoded.reverse()
        return [self._side_map(getattr(self, f"side{i}"), feature, x) for i, feature in enumerate(decoded, start=1)]

    def side_heads(self) -> list[nn.Conv2d]:
        """The side heads side1..side6 (side1 gives the main map)."""
        return [getattr(self, f"side{index}") for index in range(1, len(SIDE_CHANNELS) + 1)]

    @staticmethod
    def _side_map(head: nn.Conv2d, feature: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        """A side head's saliency map at the input size, computed in the head's own dtype (a model may
        keep its heads in float32 under a half-precision body)."""
        if feature.dtype != head.weight.dtype:
            converted = pooled_empty(feature.shape, head.weight.dtype)
            feature = feature.to(head.weight.dtype) if converted is None else converted.copy_(feature)
        return torch.sigmoid(upsample_like(single_output_conv3x3(head, feature), like))
