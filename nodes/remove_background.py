"""Remove Background (RMBG): masks for an IMAGE batch, plus the cutout or the composite."""

from __future__ import annotations

import torch

from ..rmbg_core.edges.compose import apply_mask
from . import comfy_runtime
from .model_management import ManagedModel
from .options import (BACKGROUND_COLOR, BACKGROUND_MODE, CATEGORY, ESTIMATE_FOREGROUND, MASK_CONVENTION, MODEL_TYPE,
                      background_for, check_color)


class RMBGRemoveBackground:
    """Predicts one mask per frame, ``batch_size`` frames at a time (bounded memory, progress, Cancel)."""

    DESCRIPTION = ("Removes the background with BRIA RMBG-1.4: one mask per image of the batch (video frames "
                   "too), worked through batch_size frames at a time. " + MASK_CONVENTION)
    CATEGORY = CATEGORY
    FUNCTION = "remove"
    RETURN_TYPES = ("IMAGE", "MASK")
    RETURN_NAMES = ("image", "mask")
    OUTPUT_TOOLTIPS = (
        "The cutout: RGBA with alpha = mask (times the input's own alpha, if it has one), or RGB on "
        "background_color; colours are the photo's, or the estimated foreground with estimate_foreground.",
        "The predicted mask, 1 = foreground, at the image's size. " + MASK_CONVENTION,
    )

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        return {
            "required": {
                "rmbg_model": (MODEL_TYPE, {"tooltip": "The model from Load RMBG."}),
                "image": ("IMAGE", {"tooltip": "An image or a batch of frames (RGB, or RGBA whose alpha is "
                                               "kept in the cutout)."}),
            },
            "optional": {
                "batch_size": ("INT", {
                    "default": 4, "min": 1, "max": 64, "step": 1,
                    "tooltip": "Frames sent through the network at once. Memory grows with this, not with "
                               "the number of frames; lower it if you run out of memory. Results do not "
                               "depend on it.",
                }),
                "background": BACKGROUND_MODE,
                "background_color": BACKGROUND_COLOR,
                "estimate_foreground": ESTIMATE_FOREGROUND,
            },
        }

    @classmethod
    def VALIDATE_INPUTS(cls, background_color: object = None) -> bool | str:
        return check_color(background_color)

    def remove(self, rmbg_model: ManagedModel, image: torch.Tensor, batch_size: int = 4,
               background: str = "alpha", background_color: str = "#FFFFFF",
               estimate_foreground: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        color = background_for(background, background_color)
        model = rmbg_model.ready(batch_size)
        # Other models run between ComfyUI runs: the CPU activation buffers go back when this one ends.
        masks = model.predict(image, batch_size=batch_size, input_size=rmbg_model.input_size,
                              callback=comfy_runtime.progress(len(image)), keep_buffers=False)
        out = comfy_runtime.output_device()
        result = apply_mask(image, masks, background=color, estimate_foreground=estimate_foreground)
        return result.to(out), masks.to(out)
