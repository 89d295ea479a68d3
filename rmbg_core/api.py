"""``remove_background``: the one-call entry point (image in, mask / cutout / composite out)."""

from __future__ import annotations

import os

import torch
from PIL import Image

from .edges.compose import Color, composite, cutout, parse_color, to_pil
from .edges.refine import RefinementLike, apply_refinement, as_refinement
from .model.images import ImageInput, RGBImage, mask_to_uint8, read_image
from .model.model import RMBGModel, load_model
from .model.processing import MODEL_INPUT_SIZE, check_input_size


def resolve_model(model: RMBGModel | str | os.PathLike | None) -> RMBGModel:
    """``None`` -> the default ``briaai/RMBG-1.4``; a path or repo id -> ``load_model(model)``."""
    if isinstance(model, RMBGModel):
        return model
    return load_model() if model is None else load_model(model)


def render(image: RGBImage, mask: torch.Tensor, *, return_mask: bool = False,
           background: Color | None = None, refine: RefinementLike = None,
           estimate_foreground: bool = False) -> Image.Image:
    """Build the requested PIL output from an image and its (H, W) float mask.

    The mask is refined first (``refine``; none by default), then quantised exactly as the reference
    does (truncation to uint8), so the cutout's alpha equals the returned mask for inputs without
    alpha. ``estimate_foreground`` replaces the cutout's or composite's colours by the foreground
    estimated under that alpha (no effect on a returned mask).
    """
    mask8 = mask_to_uint8(apply_refinement(mask, as_refinement(refine)))
    if return_mask:
        return to_pil(mask8)
    if background is None and image.alpha is None and not estimate_foreground and image.pixels.dtype == torch.uint8:
        # What cutout() then to_pil's rounding give, bit for bit, without full-size float copies.
        return to_pil(torch.cat((image.pixels, mask8.unsqueeze(-1)), dim=-1))
    if background is None:
        return to_pil(cutout(image.pixels, mask8, image.alpha, estimate_foreground=estimate_foreground))
    return to_pil(composite(image.pixels, mask8, background, image.alpha, estimate_foreground=estimate_foreground))


def remove_background(image: ImageInput, *, model: RMBGModel | str | os.PathLike | None = None,
                      return_mask: bool = False, background: Color | None = None,
                      refine: RefinementLike = None, estimate_foreground: bool = False,
                      input_size: int | tuple[int, int] = MODEL_INPUT_SIZE) -> Image.Image:
    """Remove the background of one image (path, bytes, PIL, numpy or tensor).

    Returns a mode "L" mask with ``return_mask=True``, an RGB composite on ``background``
    ("#RRGGBB" or an (r, g, b) tuple) when one is given, and otherwise an RGBA cutout.
    ``model`` is a loaded :class:`RMBGModel` or anything ``load_model`` accepts (default: BRIA's hub repo).
    ``refine`` applies mask refinements (a :class:`Refinement`, or a dict of its options: threshold,
    fill_holes, keep_largest, min_area, grow, feather, invert); ``estimate_foreground`` takes the old
    background's colour out of soft edges.
    Both are off by default, which gives the reference mask and the input's own colours.
    ``input_size`` is the network input ``(height, width)`` (or one int for a square); the default
    1024x1024 is the model card's, the only size that reproduces its masks.
    """
    size = check_input_size(input_size)
    picture = read_image(image)
    if background is not None and not return_mask:
        parse_color(background)  # fail on a bad colour before spending a forward pass
    refine = as_refinement(refine)  # bad options fail before the forward pass too
    mask = resolve_model(model).predict(picture.pixels[None], input_size=size)[0]
    return render(picture, mask, return_mask=return_mask, background=background, refine=refine,
                  estimate_foreground=estimate_foreground)
