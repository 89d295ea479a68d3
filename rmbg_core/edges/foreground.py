"""Foreground colour estimation: take the old background's colour out of a cutout's soft edges.

A pixel of a photo with alpha ``a`` is ``I = a*F + (1-a)*B``; keeping ``I`` as the cutout colour leaves
``(1-a)*B`` in hair and soft edges (the "halo"). Blur-fusion (Forte and Pitie, "Approximate Fast
Foreground Colour Estimation", ICIP 2021) estimates ``F`` from local alpha-weighted means:

    F_mean = box(F*a) / box(a)        B_mean = box(B*(1-a)) / box(1-a)
    F      = clip(F_mean + a * (I - a*F_mean - (1-a)*B_mean), 0, 1)

run twice: first with ``F = B = I`` and a 90 px box, then with the first pass's ``F`` and ``B_mean``
and a 6 px box. Both means are smooth at the scale of their box, so they are computed on grids of
pixel blocks (exact block sums of ``a``, ``I*a`` and ``I``; 4 px blocks for the large box, 2 px blocks
for the small one, boxes rounded to whole blocks; the first pass's ``F`` is taken per 2 px block) and
read back bilinearly; only the last line runs per pixel. That keeps the cost a few passes over the
image, on any device, for whole batches. On the fixture photos the visible colour (``a*F``) differs
from a full-resolution float64 run of the paper's algorithm by more than one grey level on under 1%
of the pixels (tests/test_foreground.py checks a synthetic case).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..errors import InputError
from ..model.images import to_unit_float

LARGE_BOX = 90
SMALL_BOX = 6
# Block sizes (pixels) of the grids the small and the large box sums are taken on (each a 2x2
# pooling of the previous one).
SMALL_BLOCK = 2
LARGE_BLOCK = 4
# Boxes up to this radius are summed from shifted copies, larger ones from cumulative sums.
SHIFTED_SUM_RADIUS = 3
# Images processed together; bounds the temporaries (about 20 floats per pixel) for long batches.
CHUNK_PIXELS = 1 << 22
# Keeps 0/0 (no foreground or no background under a box) finite; relative to the box's pixel count.
_EPS = 1e-5


def estimate_foreground(images: torch.Tensor, alphas: torch.Tensor, *, large_box: int = LARGE_BOX,
                        small_box: int = SMALL_BOX) -> torch.Tensor:
    """Foreground colours (B, H, W, 3) float32 in [0, 1] of images (B, H, W, 3) under alphas (B, H, W).

    Images are uint8 0-255 or float 0-1, alphas uint8 or float 0-1 (the cutout's final alpha);
    unbatched (H, W, 3) with (H, W) works too. Runs on, and returns on, the images' device. Box sizes
    are in pixels (the paper's 90 and 6 by default).
    """
    single = images.dim() == 3
    if single:
        images, alphas = images[None], alphas[None]
    if images.dim() != 4 or images.shape[-1] != 3:
        raise InputError(f"estimate_foreground: expected RGB images (B, H, W, 3), got {tuple(images.shape)}")
    if tuple(alphas.shape) != tuple(images.shape[:3]):
        raise InputError(f"estimate_foreground: alphas {tuple(alphas.shape)} do not match images "
                         f"{tuple(images.shape)}; expected (B, H, W)")
    if large_box < 1 or small_box < 1:
        raise ValueError(f"estimate_foreground: box sizes must be positive, got {large_box} and {small_box}")
    large_radius = _blocks_radius(large_box, LARGE_BLOCK)
    small_radius = _blocks_radius(small_box, SMALL_BLOCK)
    batch, height, width = images.shape[:3]
    step = max(1, CHUNK_PIXELS // max(1, height * width))
    out = torch.empty(images.shape, dtype=torch.float32, device=images.device)
    for start in range(0, batch, step):
        stop = min(batch, start + step)
        # Planar (b, C, H, W) float copies: pooling and resampling are fastest on that layout.
        image = torch.empty((stop - start, 3, height, width), dtype=torch.float32, device=images.device)
        alpha = torch.empty((stop - start, 1, height, width), dtype=torch.float32, device=images.device)
        to_unit_float(images[start:stop].permute(0, 3, 1, 2), image)
        to_unit_float(alphas[start:stop].to(images.device).unsqueeze(1), alpha).clamp_(0.0, 1.0)
        foreground = _blur_fusion(image, alpha, large_radius, small_radius)
        torch.clamp(foreground, 0.0, 1.0, out=out[start:stop].permute(0, 3, 1, 2))
    return out[0] if single else out


def _blocks_radius(box: int, block: int) -> int:
    """Radius, in blocks, of the odd run of whole blocks closest to ``box`` pixels wide."""
    return max(0, round((box / block - 1) / 2))


def _blur_fusion(image: torch.Tensor, alpha: torch.Tensor, large_radius: int, small_radius: int) -> torch.Tensor:
    """Both passes on planar (b, 3, H, W) ``image`` and (b, 1, H, W) ``alpha``: F before clipping.

    Few, large tensor operations: channels are stacked so each step is one call.
    """
    height, width = image.shape[-2:]
    pixels = _block_pixels(height, width, SMALL_BLOCK, image.device).expand(len(image), -1, -1, -1)
    # Exact sums over SMALL_BLOCK blocks: channels alpha | I*alpha | I | pixel count.
    small = torch.cat((_sum_pool(alpha), _sum_pool(image * alpha), _sum_pool(image), pixels), dim=1)
    # Large pass, F = B = I, on LARGE_BLOCK blocks: means of I under alpha and under 1 - alpha.
    large = box_sum(_sum_pool(small), large_radius)
    means = _weighted_means(large[:, :1], large[:, 1:4], large[:, 4:7] - large[:, 1:4], large[:, 7:])
    fg_mean, bg_mean = _upsample(means, small.shape[-2:]).split(3, dim=1)
    # Its foreground per small block (from the block's mean colour and alpha), then the small pass.
    block_means = small[:, :7] / small[:, 7:]
    fg = _fuse(block_means[:, 4:7], block_means[:, :1], fg_mean, bg_mean).clamp_(0.0, 1.0)
    block_alpha = small[:, :1]
    sums = box_sum(torch.cat((block_alpha, fg * block_alpha, bg_mean * (pixels - block_alpha), pixels), dim=1),
                   small_radius)
    fg_mean, bg_mean = _weighted_means(sums[:, :1], sums[:, 1:4], sums[:, 4:7], sums[:, 7:]).split(3, dim=1)
    # Per pixel, at full resolution.
    difference = _upsample(fg_mean - bg_mean, (height, width))
    return _fuse(image, alpha, _upsample(fg_mean, (height, width)), difference=difference)


def _weighted_means(alpha_sum: torch.Tensor, fg_sum: torch.Tensor, bg_sum: torch.Tensor,
                    count: torch.Tensor) -> torch.Tensor:
    """``F_mean | B_mean`` (b, 6, h, w): ``fg_sum / alpha_sum`` and ``bg_sum / (count - alpha_sum)``."""
    weights = torch.cat((alpha_sum, count - alpha_sum), dim=1).clamp_(min=0.0).add_(count, alpha=_EPS)
    sums = torch.cat((fg_sum, bg_sum), dim=1)
    batch, _, height, width = sums.shape
    return (sums.view(batch, 2, 3, height, width) / weights.unsqueeze(2)).view(batch, 6, height, width)


def _fuse(image: torch.Tensor, alpha: torch.Tensor, fg_mean: torch.Tensor, bg_mean: torch.Tensor | None = None, *,
          difference: torch.Tensor | None = None) -> torch.Tensor:
    """The blur-fusion update ``F_mean + a*(I - a*F_mean - (1-a)*B_mean)``, unclipped, written as
    ``lerp(F_mean, I, a) + a*(1-a)*(F_mean - B_mean)``; reuses ``fg_mean``'s memory."""
    if difference is None:
        difference = fg_mean - bg_mean
    spread = torch.addcmul(alpha, alpha, alpha, value=-1.0)
    return fg_mean.lerp_(image, alpha).addcmul_(spread, difference)


def _sum_pool(values: torch.Tensor) -> torch.Tensor:
    """Sums over 2 x 2 blocks of (b, C, H, W) (odd sizes: the last blocks are partial)."""
    height, width = values.shape[-2:]
    if height % 2 or width % 2:
        values = F.pad(values, (0, width % 2, 0, height % 2))
    rows = values[..., 0::2, :] + values[..., 1::2, :]
    return rows[..., 0::2] + rows[..., 1::2]


def _block_pixels(height: int, width: int, block: int, device: torch.device) -> torch.Tensor:
    """(1, 1, h, w): how many image pixels each block holds (edge blocks may be partial)."""
    def sizes(length: int) -> torch.Tensor:
        starts = torch.arange(0, length, block, device=device)
        return ((starts + block).clamp(max=length) - starts).to(torch.float32)

    return (sizes(height)[:, None] * sizes(width)[None, :])[None, None]


def _upsample(grid: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinear x2 from a grid of 2 x 2 blocks (values at block centres) to ``size`` pixels: what
    ``F.interpolate(scale_factor=2, mode="bilinear")`` computes, in a few strided writes (several
    times faster on CPU)."""
    up = _upsample_1d(_upsample_1d(grid, 2), 3)
    return up[..., :size[0], :size[1]]


def _upsample_1d(values: torch.Tensor, dim: int) -> torch.Tensor:
    """x2 along ``dim``: output 2i is 3/4 of input i plus 1/4 of i-1, output 2i+1 the same with i+1."""
    length = values.shape[dim]
    shape = list(values.shape)
    shape[dim] = 2 * length
    out = values.new_empty(shape)
    out.narrow(dim, 0, 1).copy_(values.narrow(dim, 0, 1))
    out.narrow(dim, 2 * length - 1, 1).copy_(values.narrow(dim, length - 1, 1))
    if length > 1:
        ahead, behind = values.narrow(dim, 1, length - 1), values.narrow(dim, 0, length - 1)
        torch.lerp(ahead, behind, 0.25, out=_every_other(out, dim, start=2))
        torch.lerp(behind, ahead, 0.25, out=_every_other(out, dim, start=1, stop=2 * length - 1))
    return out


def _every_other(values: torch.Tensor, dim: int, start: int, stop: int | None = None) -> torch.Tensor:
    index = [slice(None)] * values.dim()
    index[dim] = slice(start, stop, 2)
    return values[tuple(index)]


def box_sum(values: torch.Tensor, radius: int) -> torch.Tensor:
    """Sum over the (2*radius+1)^2 box around each element of (b, C, H, W) ``values``.

    Elements outside count as zero. Small boxes add shifted copies (exact); large ones take the
    difference of cumulative sums, whose cost does not depend on ``radius``.
    """
    return _box_sum_1d(_box_sum_1d(values, radius, dim=2), radius, dim=3)


def _box_sum_1d(values: torch.Tensor, radius: int, dim: int) -> torch.Tensor:
    length = values.shape[dim]
    if radius <= SHIFTED_SUM_RADIUS:
        total = values.clone()
        for shift in range(1, min(radius, length - 1) + 1):
            total.narrow(dim, shift, length - shift).add_(values.narrow(dim, 0, length - shift))
            total.narrow(dim, 0, length - shift).add_(values.narrow(dim, shift, length - shift))
        return total
    # Cumulative sum over the data padded with radius + 1 zeros before and radius after, minus
    # itself shifted by the box width.
    widths = [0] * (2 * values.dim())
    slot = 2 * (values.dim() - 1 - dim)  # F.pad lists the last dim first
    widths[slot], widths[slot + 1] = radius + 1, radius
    cumulative = F.pad(values, widths).cumsum(dim)
    size = 2 * radius + 1
    return cumulative.narrow(dim, size, length) - cumulative.narrow(dim, 0, length)
