"""IS-Net, the saliency network behind BRIA RMBG-1.4, in plain PyTorch; a real checkpoint loads with strict keys.

Module names (``stage1.rebnconv1.conv_s1.weight`` ...) are those of BRIA's ``briarmbg.py``; the five
residual U-block classes of the original collapse into one, parametrised by height and dilation.
Every submodule runs through ``module(...)``, so forward hooks fire on any stage, block, convolution or
side head.

As diffusers' attention modules do, each block computes through its ``processor``: the plain processors
below are the model card's arithmetic, and another implementation (the CPU accelerator,
:mod:`rmbg_core.cpu`) can be set with ``set_processor`` without changing module names, weights or hooks.
"""

from __future__ import annotations

from typing import Callable

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
    """3x3 convolution, BatchNorm, ReLU (``REBNCONV`` in the original; attribute names are key names).

    Several inputs are concatenated on channels first (a U-Net decoder step); taking them apart lets a
    processor compute the convolution without building the concatenation.
    """

    def __init__(self, in_channels: int, out_channels: int, dilation: int = 1) -> None:
        super().__init__()
        self.conv_s1 = nn.Conv2d(in_channels, out_channels, 3, padding=dilation, dilation=dilation)
        self.bn_s1 = nn.BatchNorm2d(out_channels)
        self.relu_s1 = nn.ReLU(inplace=True)
        self.processor: Callable[..., torch.Tensor] = ConvBNReLUProcessor()

    def set_processor(self, processor: Callable[..., torch.Tensor]) -> None:
        """Compute this block with ``processor(block, *inputs)`` from now on."""
        self.processor = processor

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        return self.processor(self, *inputs)


class ResidualUBlock(nn.Module):
    """Residual U-block RSU-``height``: a small U-Net whose output is added to its input projection.

    Pooled blocks (RSU7..RSU4) halve the resolution between encoder levels and dilate only the
    bottom convolution; ``dilated`` blocks (RSU4F) keep the resolution and dilate by 1, 2, 4, 8.
    A decoder stage takes two inputs (the deeper result, upsampled, and the skip connection), which
    ``rebnconvin`` concatenates.
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
        self.processor: Callable[..., torch.Tensor] = ResidualUBlockProcessor()

    def _dilation(self, level: int) -> int:
        if self.dilated:
            return 2 ** (level - 1)
        return 2 if level == self.height else 1

    def encoder_level(self, level: int) -> ConvBNReLU:
        """``rebnconv<level>``: level 1 is the top of the U, ``height`` its bottom."""
        return getattr(self, f"rebnconv{level}")

    def decoder_level(self, level: int) -> ConvBNReLU:
        """``rebnconv<level>d``, joining the level below with the skip connection of ``level``."""
        return getattr(self, f"rebnconv{level}d")

    def set_processor(self, processor: Callable[..., torch.Tensor]) -> None:
        """Compute this block with ``processor(block, *inputs)`` from now on."""
        self.processor = processor

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        return self.processor(self, *inputs)


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
        self.processor: Callable[..., torch.Tensor | list[torch.Tensor]] = ISNetProcessor()

    def encoder(self) -> list[ResidualUBlock]:
        """The encoder stages stage1..stage6, in the order they run."""
        return [getattr(self, name) for name, *_ in ENCODER_STAGES]

    def decoder(self) -> list[ResidualUBlock]:
        """The decoder stages stage5d..stage1d, in the order they run."""
        return [getattr(self, name) for name, *_ in DECODER_STAGES]

    def side_heads(self) -> list[nn.Conv2d]:
        """The side heads side1..side6 (side1 gives the main map)."""
        return [getattr(self, f"side{index}") for index in range(1, len(SIDE_CHANNELS) + 1)]

    def set_processor(self, processor: Callable[..., torch.Tensor | list[torch.Tensor]]) -> None:
        """Compute the network with ``processor(network, x, side_outputs)`` from now on."""
        self.processor = processor

    def forward(self, x: torch.Tensor, side_outputs: bool = False) -> torch.Tensor | list[torch.Tensor]:
        return self.processor(self, x, side_outputs)


# ---- The plain processors: the model card's arithmetic --------------------------------------------------
# The wiring of a U-block and of the network is written once, in ``run``; the steps between modules
# (resampling, the residual sum, how a module is called) are methods, and an implementation that only
# changes how those steps compute passes itself as ``steps`` to the plain wiring.


class ConvBNReLUProcessor:
    """``relu(bn(conv(cat(inputs))))``."""

    def __call__(self, block: ConvBNReLU, *inputs: torch.Tensor) -> torch.Tensor:
        x = inputs[0] if len(inputs) == 1 else torch.cat(inputs, 1)
        return block.relu_s1(block.bn_s1(block.conv_s1(x)))


class _Resampling:
    """The resampling steps both wirings use."""

    @staticmethod
    def downsample(x: torch.Tensor) -> torch.Tensor:
        return downsample(x)

    @staticmethod
    def upsample_like(x: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        return upsample_like(x, like)


class ResidualUBlockProcessor(_Resampling):
    """BRIA's RSU forward: ``rebnconvin`` on the input(s), a U-Net of ``height`` levels over its result,
    the two added."""

    def __call__(self, block: ResidualUBlock, *inputs: torch.Tensor) -> torch.Tensor:
        return self.run(block, list(inputs))

    def run(self, block: ResidualUBlock, inputs: list[torch.Tensor], steps: object = None) -> torch.Tensor:
        """The block on ``inputs``, a list emptied once ``rebnconvin`` has read it (a caller that holds no
        other reference so frees the block input early). ``steps``: where ``downsample``, ``upsample_like``
        and ``add`` come from (default: this processor's)."""
        steps = self if steps is None else steps
        pooled = not block.dilated
        residual = block.rebnconvin(*inputs)
        inputs.clear()
        skips = []
        hx = residual
        for level in range(1, block.height):
            hx = block.encoder_level(level)(hx)
            skips.append(hx)
            if pooled and level < block.height - 1:
                hx = steps.downsample(hx)
        hx = block.encoder_level(block.height)(hx)
        for level in range(block.height - 1, 0, -1):
            hx = block.decoder_level(level)(hx, skips.pop())
            if pooled and level > 1:
                hx = steps.upsample_like(hx, skips[-1])
        return steps.add(hx, residual)

    @staticmethod
    def add(x: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
        return x + residual


class ISNetProcessor(_Resampling):
    """IS-Net's forward: ``conv_in``, six encoder stages with 2x2 max pooling between them, five decoder
    stages each joining the deeper result (upsampled) with an encoder stage's output, side heads to maps."""

    def __call__(self, net: ISNet, x: torch.Tensor, side_outputs: bool = False) -> torch.Tensor | list[torch.Tensor]:
        return self.run(net, x, side_outputs)

    def run(self, net: ISNet, x: torch.Tensor, side_outputs: bool = False,
            steps: object = None) -> torch.Tensor | list[torch.Tensor]:
        """The forward pass; ``steps``: where ``convolve``, ``stage``, ``downsample``, ``upsample_like`` and
        ``side_map`` come from (default: this processor's)."""
        steps = self if steps is None else steps
        encoder = net.encoder()
        # ``features`` holds the only reference to each stage output, and each stage gets its inputs in a
        # list of its own, so a stage may free them once read (see ResidualUBlockProcessor.run).
        features = [steps.stage(encoder[0], [steps.convolve(net.conv_in, x)])]
        for stage in encoder[1:]:
            features.append(steps.stage(stage, [steps.downsample(features[-1])]))
        decoded = [features[-1]] if side_outputs else []
        for stage in net.decoder():
            # The deepest result so far, upsampled to the next encoder output's size, joins that output.
            features.append(steps.stage(stage, [steps.upsample_like(features.pop(), features[-1]), features.pop()]))
            if side_outputs:
                decoded.append(features[-1])
        if not side_outputs:
            return steps.side_map(net.side1, features.pop(), x)
        return [steps.side_map(head, feature, x) for head, feature in zip(net.side_heads(), reversed(decoded))]

    @staticmethod
    def convolve(conv: nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
        return conv(x)

    @staticmethod
    def stage(stage: ResidualUBlock, inputs: list[torch.Tensor]) -> torch.Tensor:
        return stage(*inputs)

    @staticmethod
    def side_map(head: nn.Conv2d, feature: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        """A side head's saliency map at the input size, computed in the head's own dtype (a model may
        keep its heads in float32 under a half-precision body)."""
        return torch.sigmoid(upsample_like(head(feature.to(head.weight.dtype)), like))
