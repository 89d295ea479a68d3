"""Winograd F(2x2, 3x3) convolution for the CPU: IS-Net's deep 3x3 layers with 2.25x fewer multiplications.

Every 2x2 block of output is ``A^T [(G g G^T) * (B^T d B)] A`` over the 4x4 input tile ``d`` around it
(Lavin & Gray, 2015). With channels, the elementwise product becomes 16 matrix products, (tiles x
in-channels) by (in-channels x out-channels), which oneDNN runs as 1x1 convolutions at full speed; the
tile transforms are a few tensor additions. It is taken only on the layer shapes where it was measured
faster than the direct convolution (:func:`winograd_suits`; the figures are in benchmarks/README.md); the
float error is no larger than the direct convolution's against a float64 reference (the transforms only
add, subtract and halve). The 32x32 layers would gain as well, but their transformed weights (16/9 of the
weight, kept instead of the 9/9 blocked copy) would add tens of MB: they stay direct, bounding the peak
memory of large photos. Tiles are processed in bands, so the workspace is bounded whatever the batch.
"""

from __future__ import annotations

import torch

from .buffer_pool import empty
from .private_ops import PrivateOps

# Transform matrices of F(2, 3): input B^T (4x4), weight G (4x3), output A^T (2x4).
_G = ((1.0, 0.0, 0.0), (0.5, 0.5, 0.5), (0.5, -0.5, 0.5), (0.0, 0.0, 1.0))
# The product term (1, 1) has coefficient +1 in all four outputs of a tile: the bias is added there once.
_BIAS_TERM = 5
# Per band (at least one tile row): a group of 4 transformed inputs (4 x tiles x in-channels) at most
# about GROUP_BYTES (small enough to stay in cache between the transform and the products), each of the
# 16 products (tiles x out-channels) at most PRODUCT_BYTES, well under the 2 MB from which torch takes
# fresh 2 MB-aligned pages for a tensor: smaller ones come back from the C heap without page faults.
# (The values tried and chosen are in benchmarks/README.md.)
GROUP_BYTES = 8 << 20
PRODUCT_BYTES = 1 << 20
# Where the transforms pay for themselves (measured per layer shape against the direct convolution).
MIN_OUT_CHANNELS = 128
MIN_CHANNEL_PRODUCT = 32768
MIN_PIXELS, MAX_PIXELS = 64 * 64, 128 * 128


def winograd_suits(conv: torch.nn.Conv2d, in_channels: int, height: int, width: int) -> bool:
    """True for a 3x3, stride-1, padding-1 convolution on an even-sized map where F(2x2, 3x3) is faster."""
    return (conv.kernel_size == (3, 3) and conv.stride == (1, 1) and conv.padding == (1, 1)
            and conv.dilation == (1, 1) and conv.groups == 1 and height % 2 == 0 and width % 2 == 0
            and conv.out_channels >= MIN_OUT_CHANNELS and in_channels * conv.out_channels >= MIN_CHANNEL_PRODUCT
            and MIN_PIXELS <= height * width <= MAX_PIXELS)


def transform_weights(weight: torch.Tensor, tiles: int) -> tuple[torch.Tensor, ...]:
    """The 16 matrices ``G g G^T`` of a (N, C, 3, 3) weight, each as a oneDNN-blocked (N, C, 1, 1) weight.

    Each is summed in float64 and rounded once, one at a time, from the nine taps converted to float64
    once (at most 18 MB for 512x512 channels). ``tiles`` is the tile count of a band: oneDNN's layout
    depends on it, and weights packed for another count are reordered again on every call.
    """
    out_channels, in_channels = weight.shape[:2]
    taps = [[weight[:, :, k, m].detach().to(torch.float64) for m in range(3)] for k in range(3)]
    terms = []
    for a in range(4):
        for b in range(4):
            u = torch.zeros((out_channels, in_channels), dtype=torch.float64)
            for k in range(3):
                for m in range(3):
                    if _G[a][k] and _G[b][m]:
                        u.add_(taps[k][m], alpha=_G[a][k] * _G[b][m])
            u = u.to(weight.dtype).reshape(out_channels, in_channels, 1, 1)
            terms.append(PrivateOps.reorder_weight(u, (0, 0), (1, 1), (1, 1), (1, in_channels, tiles, 1)))
    return tuple(terms)


def band_rows(in_channels: int, out_channels: int, height: int, width: int, element_size: int) -> int:
    """Tile rows per band for an (H, W) map: bands of equal height within the workspace limits."""
    tile_rows, tile_cols = height // 2, width // 2
    most = max(1, min(tile_rows, GROUP_BYTES // (4 * tile_cols * in_channels * element_size),
                      PRODUCT_BYTES // (tile_cols * out_channels * element_size)))
    return -(-tile_rows // -(-tile_rows // most))


def winograd_conv_relu(inputs: tuple[torch.Tensor, ...], weights: tuple[torch.Tensor, ...],
                       bias: torch.Tensor | None) -> torch.Tensor:
    """``relu(conv(cat(inputs, 1)))`` (3x3, padding 1) from the :func:`transform_weights` of the whole weight.

    Inputs are (B, C_i, H, W) with even H and W; each is transformed into its channels of one
    workspace, so a concatenation costs nothing. The result is channels-last, from the buffer pool
    when one is active.
    """
    batch, _, height, width = inputs[0].shape
    channels, out_channels = sum(x.shape[1] for x in inputs), weights[0].shape[0]
    maps = [x.permute(0, 2, 3, 1) for x in inputs]  # (B, H, W, C) views
    out = empty((batch, out_channels, height, width), inputs[0].dtype)
    # (B, H/2, 2, W/2, 2, N): output pixel (2i + r, 2j + c) of tile (i, j).
    tiled_out = out.permute(0, 2, 3, 1).view(batch, height // 2, 2, width // 2, 2, out_channels)
    tile_rows, tile_cols = height // 2, width // 2
    band = band_rows(channels, out_channels, height, width, inputs[0].element_size())
    for image in range(batch):
        for first in range(0, tile_rows, band):
            last = min(tile_rows, first + band)
            tiles = (last - first) * tile_cols
            products = []
            for a in range(4):
                # Terms 4a..4a+3: row a of B^T d B for every input's channels, then their matrix products.
                group = empty((4, tiles, channels), out.dtype, channels_last=False)
                start = 0
                for source in maps:
                    part = source.shape[-1]
                    _transform_rows(source[image], first, last, a, group[..., start:start + part])
                    start += part
                for b in range(4):
                    term = 4 * a + b
                    products.append(PrivateOps.convolution(_as_map(group[b]), weights[term],
                                                           bias if term == _BIAS_TERM else None,
                                                           (0, 0), (1, 1), (1, 1), None))
                del group
            _transform_output(products, tiled_out[image, first:last])
    return out


def _transform_rows(image: torch.Tensor, first: int, last: int, a: int, group: torch.Tensor) -> None:
    """Row ``a`` of B^T d B (all four columns) for the tiles in rows ``first:last`` of an (H, W, C) map,
    into ``group`` (4, tiles, C). Tile (i, j) covers rows 2i-1..2i+2 and columns 2j-1..2j+2; outside the
    map is zero padding."""
    height, width, channels = image.shape
    rows, cols, tile_rows = last - first, width // 2, height // 2
    # Row combination a of B^T over the tile's four rows d0..d3, as a (rows, W + 2, C) map whose
    # first and last columns are the zero padding.
    summed = empty((rows, width + 2, channels), image.dtype, channels_last=False)
    summed[:, 0].zero_()
    summed[:, -1].zero_()
    inner = summed[:, 1:-1]

    def d(k: int, lo: int, hi: int) -> torch.Tensor:  # row k of the tiles lo..hi-1: image row 2i + k - 1
        return image[2 * lo + k - 1:2 * hi + k - 2:2]

    if a == 0:  # d0 - d2; d0 is padding for the first tile row
        lo = max(first, 1)
        if first == 0:
            torch.neg(d(2, 0, 1), out=inner[:1])
        torch.sub(d(0, lo, last), d(2, lo, last), out=inner[lo - first:])
    elif a == 1:
        torch.add(d(1, first, last), d(2, first, last), out=inner)
    elif a == 2:
        torch.sub(d(2, first, last), d(1, first, last), out=inner)
    else:  # d1 - d3; d3 is padding for the last tile row
        hi = min(last, tile_rows - 1)
        torch.sub(d(1, first, hi), d(3, first, hi), out=inner[:hi - first])
        if last == tile_rows:
            inner[-1:].copy_(d(1, last - 1, last))
    c = [summed[:, k:k + 2 * cols - 1:2] for k in range(4)]
    v = group.view(4, rows, cols, group.shape[-1])
    torch.sub(c[0], c[2], out=v[0])
    torch.add(c[1], c[2], out=v[1])
    torch.sub(c[2], c[1], out=v[2])
    torch.sub(c[1], c[3], out=v[3])


def _as_map(matrix: torch.Tensor) -> torch.Tensor:
    """A (rows, C) matrix with unit channel stride viewed as a channels-last (1, C, rows, 1) image (same memory):
    a matrix product with it is a 1x1 convolution."""
    rows, channels = matrix.shape
    return matrix.as_strided((1, channels, rows, 1), (rows * channels, 1, channels, channels))


def _transform_output(products: list[torch.Tensor], out: torch.Tensor) -> None:
    """A^T m A of a band's 16 products (channels-last (1, N, tiles, 1)) into ``out`` (rows, 2, cols, 2, N),
    then ReLU."""
    rows, _, cols, _, channels = out.shape
    m = [p.permute(0, 2, 3, 1).reshape(rows, cols, channels) for p in products]
    s = empty((4, rows, cols, channels), out.dtype, channels_last=False)
    for r in range(2):
        # Rows of A^T, (1, 1, 1, 0) and (0, 1, -1, -1), over the products' first index; then over the second.
        for b in range(4):
            if r == 0:
                torch.add(m[b], m[4 + b], out=s[b]).add_(m[8 + b])
            else:
                torch.sub(m[4 + b], m[8 + b], out=s[b]).sub_(m[12 + b])
        left, right = out[:, r, :, 0], out[:, r, :, 1]
        torch.add(s[0], s[1], out=left).add_(s[2])
        torch.sub(s[1], s[2], out=right).sub_(s[3])
    out.relu_()
