"""Apply Mask (RMBG): cut out or composite any IMAGE with any MASK (batch broadcast, resize)."""

from __future__ import annotations

import torch

from ..rmbg_core.edges.compose import apply_mask
from . import comfy_runtime
from .options import (BACKGROUND_COLOR, BACKGROUND_MODE, CATEGORY, ESTIMATE_FOREGROUND, MASK_CONVENTION, background_for,
                      check_color)


class RMBGApplyMask:
    """``rmbg_core.edges.compose.apply_mask`` as a node."""

    DESCRIPTION = ("Applies a mask to an image: an RGBA cutout or an RGB composite on a colour. A single mask "
                   "is used for every image of a batch; a mask of another size is resized. " + MASK_CONVENTION)
    CATEGORY = CATEGORY
    FUNCTION = "apply"
    RETURN_TYPES = ("IMAGE",)
    RETURN_NAMES = ("image",)
    OUTPUT_TOOLTIPS = ("RGBA (mode 'alpha') or RGB (mode 'color'), at the image's size.",)

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        return {
            "required": {
                "image": ("IMAGE", {"tooltip": "Image or batch; an RGBA image's own alpha is multiplied in."}),
                "mask": ("MASK", {"tooltip": "1 = keep. One mask for the whole batch, or one per image; resized "
                                             "bilinearly if its size differs. For LoadImage's MASK (1 = "
                                             "transparent) turn on invert."}),
                "mode": BACKGROUND_MODE,
                "background_color": BACKGROUND_COLOR,
                "invert": ("BOOLEAN", {"default": False, "label_on": "keep background", "label_off": "keep foreground",
                                       "tooltip": "Use 1 - mask: keep what the mask marks as background."}),
            },
            "optional": {
                "estimate_foreground": ESTIMATE_FOREGROUND,
            },
        }

    @classmethod
    def VALIDATE_INPUTS(cls, background_color: object = None) -> bool | str:
        return check_color(background_color)

    def apply(self, image: torch.Tensor, mask: torch.Tensor, mode: str = "alpha", background_color: str = "#FFFFFF",
              invert: bool = False, estimate_foreground: bool = False) -> tuple[torch.Tensor]:
        result = apply_mask(image, mask, background=background_for(mode, background_color), invert=invert,
                            estimate_foreground=estimate_foreground)
        return (result.to(comfy_runtime.output_device()),)
