"""Turn an image and its mask into a cutout (straight alpha) or a composite on a solid colour.

Everything works on float tensors in [0, 1], channels last, with any leading batch dimensions, so the
ComfyUI nodes, the pipeline and the CLI share one implementation. Deliberate fixes over the model
card: the cutout keeps the input's colours (the reference pastes onto a transparent black canvas,
darkening soft edges) and multiplies in the input's own alpha (the reference drops it). With
``estimate_foreground=True`` the colours are the estimated foreground (``foreground.py``) instead of
the input's, which removes the old background's halo from soft edges.
``apply_mask`` is the batch entry point: it fits a mask (batch broadcast, resize) to an image batch
and returns the cutout or the composite, allocating little beyond its output (video batches are large).
"""

from __future__ import annotations

import re
from typing import Sequence, Union

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from ..errors import InputError
from ..model.images import split_channels, to_uint8, to_unit_float
from .foreground import estimate_foreground as estimate_foreground_colors

Color = Union[str, Sequence[int]]
_HEX = re.compile(r"^#?([0-9a-fA-F]{3}|[0-9a-fA-F]{6})$")


def parse_color(color: Color) -> tuple[int, int, int]:
    """``"#RRGGBB"``, ``"#RGB"`` or an (r, g, b) tuple of 0-255 ints to an (r, g, b) tuple."""
    if isinstance(color, str):
        match = _HEX.match(color.strip())
        if not match:
            raise InputError(f"background colour {color!r} is not a hex colour like '#RRGGBB'")
        digits = match.group(1)
        if len(digits) == 3:
            digits = "".join(2 * d for d in digits)
        return tuple(int(digits[i:i + 2], 16) for i in (0, 2, 4))
    try:
        values = tuple(int(c) for c in color)
    except (TypeError, ValueError):
        raise InputError(f"background colour {color!r} is neither '#RRGGBB' nor an (r, g, b) tuple") from None
    if len(values) != 3 or not all(0 <= v <= 255 for v in values):
        raise InputError(f"background colour {color!r} must be three integers in 0-255")
    return values


def cutout(image: torch.Tensor, mask: torch.Tensor, alpha: torch.Tensor | None = None, *,
           estimate_foreground: bool = False) -> torch.Tensor:
    """RGBA (..., H, W, 4): alpha = mask (times the input's alpha, if any); colours are the image's
    own, or with ``estimate_foreground`` its estimated foreground colours under that alpha."""
    weight = _weight(mask, alpha)
    return torch.cat((_colors(image, weight, estimate_foreground), weight.unsqueeze(-1)), dim=-1)


def composite(image: torch.Tensor, mask: torch.Tensor, color: Color, alpha: torch.Tensor | None = None, *,
              estimate_foreground: bool = False) -> torch.Tensor:
    """RGB (..., H, W, 3): the image (or its estimated foreground) over a solid ``color`` by the mask.

    Computed as ``background + (colours - background) * weight`` in one output buffer, so a large
    batch needs no full-size temporaries.
    """
    weight = _weight(mask, alpha)
    colors = _colors(image, weight, estimate_foreground)
    background = torch.tensor(parse_color(color), dtype=torch.float32, device=colors.device) / 255.0
    out = colors - background
    return out.mul_(weight.unsqueeze(-1)).add_(background)


def _weight(mask: torch.Tensor, alpha: torch.Tensor | None) -> torch.Tensor:
    """The final alpha: mask times the input's alpha (if any), float in [0, 1]."""
    weight = to_unit_float(mask)
    return weight if alpha is None else weight * to_unit_float(alpha)


def _colors(image: torch.Tensor, weight: torch.Tensor, estimate: bool) -> torch.Tensor:
    """The colours to show: the image's own, or its foreground estimated under ``weight``."""
    if not estimate:
        return to_unit_float(image)
    lead = image.shape[:-3]
    weight = weight.to(image.device).expand(image.shape[:-1])
    flat = estimate_foreground_colors(image.reshape(-1, *image.shape[-3:]), weight.reshape(-1, *weight.shape[-2:]))
    return flat.reshape(*lead, *flat.shape[-3:])


def fit_mask(image: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Make a (B, H, W, C) image batch and a mask batch agree; returns ``(image, mask)``.

    The mask may be (H, W) or (N, H, W), on any device; it is moved to the image's, resized
    bilinearly to the image's size if it differs, and clamped to [0, 1]. A batch of 1 (image or
    mask) is broadcast to the other's batch (as a view); other differing batch sizes are an
    :class:`InputError`.
    """
    if image.dim() != 4:
        raise InputError(f"image: expected a (B, H, W, C) batch, got shape {tuple(image.shape)}")
    if mask.dim() == 2:
        mask = mask[None]
    if mask.dim() != 3:
        raise InputError(f"mask: expected (H, W) or (B, H, W), got shape {tuple(mask.shape)}")
    images, masks = image.shape[0], mask.shape[0]
    if images != masks and 1 not in (images, masks):
        raise InputError(f"mask batch of {masks} does not match image batch of {images}: "
                         "give one mask for all images, or one mask per image")
    mask = to_unit_float(mask.to(image.device))
    if mask.shape[1:] != image.shape[1:3]:
        mask = F.interpolate(mask[:, None], size=tuple(image.shape[1:3]), mode="bilinear",
                             align_corners=False)[:, 0]
    mask = mask.clamp(0.0, 1.0)
    batch = max(images, masks)
    return image.expand(batch, *image.shape[1:]), mask.expand(batch, *mask.shape[1:])


def apply_mask(image: torch.Tensor, mask: torch.Tensor, *, background: Color | None = None,
               invert: bool = False, estimate_foreground: bool = False) -> torch.Tensor:
    """Cut an image batch out by a mask: (B, H, W, C) image (C 1-4) and mask (see :func:`fit_mask`).

    Returns the RGBA cutout (B, H, W, 4) with alpha = mask times the input's alpha, or, given a
    ``background`` colour, the RGB composite (B, H, W, 3). ``invert`` uses ``1 - mask`` (keep the
    background instead of the subject); ``estimate_foreground`` decontaminates edge colours.
    """
    if background is not None:
        parse_color(background)  # a bad colour fails before any work
    image, mask = fit_mask(image, mask)
    if invert:
        mask = 1.0 - mask
    rgb, alpha = split_channels(image)
    if background is None:
        return cutout(rgb, mask, alpha, estimate_foreground=estimate_foreground)
    return composite(rgb, mask, background, alpha, estimate_foreground=estimate_foreground)


def to_pil(data: torch.Tensor) -> Image.Image:
    """An (H, W) uint8 tensor to a mode "L" image, (H, W, 3) to "RGB", (H, W, 4) to "RGBA"."""
    if data.dtype != torch.uint8:
        data = to_uint8(data)
    array = np.ascontiguousarray(data.cpu().numpy())
    if not (array.ndim == 2 or (array.ndim == 3 and array.shape[-1] in (3, 4))):
        raise ValueError(f"cannot make a PIL image from shape {tuple(array.shape)}")
    return Image.fromarray(array)
