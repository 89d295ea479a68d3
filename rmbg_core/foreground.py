"""Foreground colour estimation: take the old background's colour out of a cutout's soft edges.

A pixel of a photo with alpha ``a`` is ``I = a*F + (1-a)*B``; keeping ``I`` as the cutout colour leaves
``(1-a)*B`` in hair and soft edges (the "halo"). Blur-fusion (Forte and Pitie, "Approximate Fast
Foreground Colour Estimation", ICIP 2021) estimates ``F`` from local alpha-weighted means:

    F_mean = box(F*a) / box(a)        B_mean = box(B*(1-a)) / box(1-a)
    F      = clip(F_mean + a * (I - a*F_mean - (1-a)*B_mean), 0, 1)

run twice: first with ``F = B = I`` and a 90 px box, then with the first pass's ``F`` and ``B_mean``
and a 6 px box. Both means are smooth at the scale of their box, so they are computed on grids of
pixel blocks (exact block sums of ``a``, ``I*a`` and ``I``; 4 px blocks for the large box, 2 px blocks
for the small one, boxes rounded to whole blocks) and read back bilinearly; only the last line runs
per pixel. That keeps the cost a few passes over the image, on any device, for whole batches.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .errors import InputError

LARGE_BOX = 90
SMALL_BOX = 6
# Block sizes (pixels) of the grids the small and the large box sums are taken on.
SMALL_BLOCK = 2
LARGE_BLOCK = 2 * SMALL_BLOCK
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
        _to_unit(images[start:stop].permute(0, 3, 1, 2), image)
        _to_unit(alphas[start:stop].to(images.device).unsqueeze(1), alpha).clamp_(0.0, 1.0)
        foreground = _blur_fusion(image, alpha, large_radius, small_radius)
        torch.clamp(foreground, 0.0, 1.0, out=out[start:stop].permute(0, 3, 1, 2))
    return out[0] if single else out


def _to_unit(data: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """uint8 0-255 or float 0-1 ``data`` into float32 ``out`` in [0, 1], in one pass."""
    if data.dtype == torch.uint8:
        return torch.mul(data, 1.0 / 255.0, out=out)
    return out.copy_(data)


def _blocks_radius(box: int, block: int) -> int:
    """Radius, in blocks, of the odd run of whole blocks closest to ``box`` pixels wide."""
    return max(0, round((box / block - 1) / 2))


def _blur_fusion(image: torch.Tensor, alpha: torch.Tensor, large_radius: int, small_radius: int) -> torch.Tensor:
    """Both passes on planar (b, 3, H, W) ``image`` and (b, 1, H, W) ``alpha``: F before clipping."""
    height, width = image.shape[-2:]
    # Exact sums over SMALL_BLOCK blocks, then over LARGE_BLOCK blocks: of alpha, I*alpha, I, pixels.
    small = [_sum_pool(alpha, SMALL_BLOCK), _sum_pool(image * alpha, SMALL_BLOCK), _sum_pool(image, SMALL_BLOCK),
             _block_pixels(height, width, SMALL_BLOCK, image.device).expand(len(image), -1, -1, -1)]
    large = [_sum_pool(part, LARGE_BLOCK // SMALL_BLOCK) for part in small]
    # Large pass (F = B = I): box of alpha*I / box of alpha, box of (1-alpha)*I / box of (1-alpha).
    alpha_sum, fg_sum, image_sum, pixels = box_sum(torch.cat(large, dim=1), large_radius).split((1, 3, 3, 1), dim=1)
    bg_weight = (pixels - alpha_sum).clamp_(min=0.0)
    means = torch.cat((fg_sum / (alpha_sum + _EPS * pixels),
                       (image_sum - fg_sum) / (bg_weight + _EPS * pixels)), dim=1)
    fg_mean, bg_mean = _upsample(means, LARGE_BLOCK // SMALL_BLOCK, small[0].shape[-2:]).split(3, dim=1)
    # Its foreground per small block (from the block's mean colour and alpha), then the small pass.
    block_alpha, _, block_image, block_pixels = small
    fg = _fuse(block_image / block_pixels, block_alpha / block_pixels, fg_mean, bg_mean)
    alpha_sum, fg_sum, bg_sum, pixels = box_sum(
        torch.cat((block_alpha, fg * block_alpha, bg_mean * (block_pixels - block_alpha), block_pixels),
                  dim=1), small_radius).split((1, 3, 3, 1), dim=1)
    fg_mean = fg_sum / (alpha_sum + _EPS * pixels)
    bg_mean = bg_sum / ((pixels - alpha_sum).clamp_(min=0.0) + _EPS * pixels)
    # Per pixel: F = F_mean + a*(I - F_mean) + a*(1-a)*(F_mean - B_mean), the update rearranged.
    difference = _upsample(fg_mean - bg_mean, SMALL_BLOCK, (height, width))
    fg_mean = _upsample(fg_mean, SMALL_BLOCK, (height, width))
    return fg_mean.lerp_(image, alpha).addcmul_(alpha - alpha * alpha, difference)


def _fuse(image: torch.Tensor, alpha: torch.Tensor, fg_mean: torch.Tensor, bg_mean: torch.Tensor) -> torch.Tensor:
    """The blur-fusion update ``clip(F_mean + a*(I - a*F_mean - (1-a)*B_mean), 0, 1)``."""
    residual = image - alpha * fg_mean - (1.0 - alpha) * bg_mean
    return (fg_mean + alpha * residual).clamp_(0.0, 1.0)


def _sum_pool(values: torch.Tensor, block: int) -> torch.Tensor:
    """Sums over ``block`` x ``block`` blocks of (b, C, H, W); edge blocks may be partial."""
    if block == 1:
        return values
    return F.avg_pool2d(values, block, ceil_mode=True, divisor_override=1)


def _block_pixels(height: int, width: int, block: int, device: torch.device) -> torch.Tensor:
    """(1, 1, h, w): how many image pixels each block holds (edge blocks may be partial)."""
    def sizes(length: int) -> torch.Tensor:
        starts = torch.arange(0, length, block, device=device)
        return ((starts + block).clamp(max=length) - starts).to(torch.float32)

    return (sizes(height)[:, None] * sizes(width)[None, :])[None, None]


def _upsample(grid: torch.Tensor, factor: int, size: tuple[int, int]) -> torch.Tensor:
    """Bilinear from a grid of ``factor``-pixel blocks (values at block centres) to ``size`` pixels."""
    if factor == 1:
        return grid.clone()
    up = F.interpolate(grid, scale_factor=float(factor), mode="bilinear", align_corners=False)
    return up[..., :size[0], :size[1]]


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
