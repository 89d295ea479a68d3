"""IS-Net, the saliency network behind BRIA RMBG-1.4, written so a real checkpoint loads with strict keys.

Module names (``stage1.rebnconv1.conv_s1.weight`` ...) are those of BRIA's ``briarmbg.py``; the five
residual U-block classes of the original collapse into one, parametrised by height and dilation.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

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
    return F.interpolate(x, size=like.shape[2:], mode="bilinear", align_corners=False)


def downsample(x: torch.Tensor) -> torch.Tensor:
    """2x2 max pooling with ceil mode, as between every stage of IS-Net."""
    return F.max_pool2d(x, 2, stride=2, ceil_mode=True)


class ConvBNReLU(nn.Module):
    """3x3 convolution, BatchNorm, ReLU (``REBNCONV`` in the original; attribute names are key names)."""

    def __init__(self, in_channels: int, out_channels: int, dilation: int = 1) -> None:
        super().__init__()
        self.conv_s1 = nn.Conv2d(in_channels, out_channels, 3, padding=dilation, dilation=dilation)
        self.bn_s1 = nn.BatchNorm2d(out_channels)
        self.relu_s1 = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu_s1(self.bn_s1(self.conv_s1(x)))


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
        pooled = not self.dilated
        residual = self.rebnconvin(x)
        skips = []
        hx = residual
        for level in range(1, self.height):
            hx = getattr(self, f"rebnconv{level}")(hx)
            skips.append(hx)
            if pooled and level < self.height - 1:
                hx = downsample(hx)
        hx = getattr(self, f"rebnconv{self.height}")(hx)
        for level in range(self.height - 1, 0, -1):
            hx = getattr(self, f"rebnconv{level}d")(torch.cat((hx, skips.pop()), 1))
            if pooled and level > 1:
                hx = upsample_like(hx, skips[-1])
        return hx + residual


class ISNet(nn.Module):
    """IS-Net (DIS) as used by RMBG-1.4: 3-channel image in, saliency map(s) in [0, 1] out.

    ``forward`` returns the main map ``(B, 1, H, W)``; with ``side_outputs=True`` it returns all six
    side maps, main first, as BRIA's model does (the training-time deep supervision outputs).
    """

    def __init__(self, in_channels: int = 3, out_channels: int = 1) -> None:
        super().__init__()
        self.conv_in = nn.Conv2d(in_channels, 64, 3, stride=2, padding=1)
        for name, height, cin, cmid, cout, dilated in ENCODER_STAGES + DECODER_STAGES:
            self.add_module(name, ResidualUBlock(height, cin, cmid, cout, dilated))
        for index, channels in enumerate(SIDE_CHANNELS, start=1):
            self.add_module(f"side{index}", nn.Conv2d(channels, out_channels, 3, padding=1))

    def forward(self, x: torch.Tensor, side_outputs: bool = False) -> torch.Tensor | list[torch.Tensor]:
        hx = self.conv_in(x)
        encoded = []
        for index, (name, *_) in enumerate(ENCODER_STAGES):
            if index:
                hx = downsample(hx)
            hx = getattr(self, name)(hx)
            encoded.append(hx)
        hx = encoded.pop()
        decoded = [hx] if side_outputs else []
        for name, *_ in DECODER_STAGES:
            skip = encoded.pop()
            hx = getattr(self, name)(torch.cat((upsample_like(hx, skip), skip), 1))
            if side_outputs:
                decoded.append(hx)
        if not side_outputs:
            return torch.sigmoid(upsample_like(self.side1(hx), x))
        decoded.reverse()
        return [torch.sigmoid(upsample_like(getattr(self, f"side{i}")(feature), x))
                for i, feature in enumerate(decoded, start=1)]
