"""Pre- and post-processing of the RMBG-1.4 model card, in torch, batch-wise and memory-lean.

Reference (model card): ``F.interpolate(rgb_float, size=[1024, 1024], mode="bilinear")``, ``/255``,
``-0.5``; output: first map, bilinear back to the input size, min-max per image, ``*255``, uint8 by
truncation. The input resize here is the same arithmetic in two passes (across, then down), a band of
rows at a time, so a 24 MP photo never gets a full-resolution float copy.
"""

from __future__ import annotations

import operator

import torch

from ..errors import InputError
from ..options import is_int

MODEL_INPUT_SIZE = (1024, 1024)
# Elements of float work per band of rows in the input resize (bounds its temporary memory).
RESIZE_BAND_ELEMENTS = 1 << 22
# Saliency maps are sigmoids in [0, 1]; a range this small is float rounding, not a prediction.
CONSTANT_SPAN = 1e-5


def linear_taps(in_size: int, out_size: int, device: torch.device) -> tuple[torch.Tensor, ...]:
    """Source indices and weights of bilinear resampling, as ``F.interpolate(align_corners=False)``.

    Returns ``(index0, index1, weight0, weight1)`` for every output position.
    """
    scale = torch.tensor(in_size, dtype=torch.float32) / out_size
    position = (torch.arange(out_size, dtype=torch.float32) + 0.5) * scale - 0.5
    position = position.clamp_(min=0.0)
    index0 = position.to(torch.int64).clamp_(max=in_size - 1)
    index1 = (index0 + 1).clamp_(max=in_size - 1)
    weight1 = position - index0
    weight0 = 1.0 - weight1
    return index0.to(device), index1.to(device), weight0.to(device), weight1.to(device)


def resize_bilinear(images: torch.Tensor, size: tuple[int, int], scale: float = 1.0) -> torch.Tensor:
    """Resize channels-last ``images`` (B, H, W, C) of any dtype to float32 (B, h, w, C), times ``scale``.

    Equal (to float rounding) to ``F.interpolate`` on the float tensor, in two passes: the source rows
    the output reads (at most two per output row) are resampled across by torch's own bilinear kernel,
    a band of rows at a time from the original dtype, then each output row blends its two rows. The
    float buffers hold at most twice the output and a band, never a full-size float copy of the input.
    """
    batch, height, width, channels = images.shape
    out_h, out_w = size
    device = images.device
    if (height, width) == (out_h, out_w):  # bilinear at scale 1 is the identity (weights 1 and 0)
        out = torch.empty((batch, out_h, out_w, channels), dtype=torch.float32, device=device)
        out.copy_(images)
        return out.mul_(scale) if scale != 1.0 else out
    row0, row1, row_w0, row_w1 = linear_taps(height, out_h, device)
    rows = torch.unique(torch.cat((row0, row1)))  # sorted
    across = torch.empty((batch, len(rows), out_w, channels), dtype=torch.float32, device=device)
    band = max(1, RESIZE_BAND_ELEMENTS // max(1, batch * width * channels))
    for start in range(0, len(rows), band):
        picked = rows[start:start + band]
        slab = images.index_select(1, picked).to(torch.float32)
        if scale != 1.0:
            slab.mul_(scale)
        # Resampled to its own height, a slab keeps its rows exactly (weights 1 and 0): only columns change.
        across[:, start:start + len(picked)] = torch.ops.aten.upsample_bilinear2d(
            slab.permute(0, 3, 1, 2), [len(picked), out_w], False, None, None).permute(0, 2, 3, 1)
        del slab
    where = torch.empty(height, dtype=torch.int64, device=device)
    where[rows] = torch.arange(len(rows), device=device)
    out = torch.empty((batch, out_h, out_w, channels), dtype=torch.float32, device=device)
    band = max(1, RESIZE_BAND_ELEMENTS // max(1, batch * out_w * channels))
    for start in range(0, out_h, band):
        stop = min(out_h, start + band)
        target = out[:, start:stop]
        torch.mul(across.index_select(1, where[row0[start:stop]]), row_w0[start:stop, None, None], out=target)
        target.add_(across.index_select(1, where[row1[start:stop]]).mul_(row_w1[start:stop, None, None]))
    return out


def preprocess(images: torch.Tensor, size: tuple[int, int] = MODEL_INPUT_SIZE,
               dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Channels-last RGB batch (B, H, W, 3), uint8 0-255 or float 0-1, to the network input (B, 3, h, w).

    The result is channels-last in memory (what fast convolution kernels prefer) and in ``dtype``.
    """
    scale = 1.0 if images.dtype == torch.uint8 else 255.0
    resized = resize_bilinear(images, size, scale)
    resized.div_(255.0).sub_(0.5)
    return resized.permute(0, 3, 1, 2).to(dtype)


def postprocess(prediction: torch.Tensor, size: tuple[int, int], out: torch.Tensor | None = None) -> torch.Tensor:
    """Network map (B, 1, h, w) to masks (B, H, W) float32 in [0, 1] at ``size``, min-max per image.

    A constant map (range below ``CONSTANT_SPAN``, i.e. flat up to float rounding) gives an all-zero
    mask instead of the reference's 0/0 NaNs or amplified rounding noise. ``out`` (B, H, W) float32
    on the prediction's device receives the masks, so a large photo's mask exists once in memory.
    """
    prediction = prediction.to(torch.float32)
    if out is None:
        out = torch.empty((prediction.shape[0], *size), dtype=torch.float32, device=prediction.device)
    # F.interpolate(size=..., mode="bilinear", align_corners=False) with an output buffer.
    torch.ops.aten.upsample_bilinear2d.out(prediction, list(size), False, None, None, out=out.unsqueeze(1))
    masks = out
    low = masks.amin(dim=(1, 2), keepdim=True)
    span = masks.amax(dim=(1, 2), keepdim=True) - low
    flat = span <= CONSTANT_SPAN
    masks.sub_(low).div_(torch.where(flat, torch.ones_like(span), span))
    return masks.masked_fill_(flat, 0.0)


def check_input_size(size: int | tuple[int, int] | list[int], name: str = "input_size") -> tuple[int, int]:
    """Validate a network input size: ``(height, width)`` of positive ints, or one int for a square.

    Front ends call this before any work, so a bad size is a one-line :class:`InputError` instead
    of a torch traceback from deep inside the resize.
    """
    values = (size, size) if is_int(size) else size
    try:
        height, width = values
    except (TypeError, ValueError):
        raise InputError(f"{name} must be (height, width) or one int, got {size!r}") from None
    if not (is_int(height) and is_int(width) and height > 0 and width > 0):
        raise InputError(f"{name} must hold two positive integers (height, width), got {size!r}")
    return operator.index(height), operator.index(width)
