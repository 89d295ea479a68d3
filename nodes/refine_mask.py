"""Refine Mask (RMBG): rmbg_core's mask refinements on a MASK batch, each mask on its own."""

from __future__ import annotations

import torch

from ..rmbg_core.edges.refine import apply_refinement
from . import comfy_runtime
from .options import CATEGORY, MASK_CONVENTION, refinement_from_widgets, refinement_inputs


class RMBGRefineMask:
    """``rmbg_core.edges.refine.apply_refinement`` as a node; the options are ``rmbg_core.Refinement``'s."""

    DESCRIPTION = ("Cleans up a mask or a batch of masks (each on its own), in this order: levels, threshold, "
                   "fill_holes, keep_largest / min_area, grow, feather, invert. Everything is off by default (the "
                   "mask passes through unchanged). The options have the same names and meaning as the refine= options of "
                   "rmbg-kit's Python API and transformers pipeline. " + MASK_CONVENTION)
    CATEGORY = CATEGORY
    FUNCTION = "refine"
    RETURN_TYPES = ("MASK",)
    RETURN_NAMES = ("mask",)
    OUTPUT_TOOLTIPS = ("The refined mask (or batch), same size, 1 = foreground.",)

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        return {
            "required": {
                "mask": ("MASK", {"tooltip": "A mask or a batch of masks, e.g. Remove Background's mask output."}),
            },
            "optional": refinement_inputs(),
        }

    def refine(self, mask: torch.Tensor, threshold: float = 0.0, fill_holes: bool = False, keep_largest: bool = False,
               min_area: float = 0.0, grow: int = 0, feather: float = 0.0, invert: bool = False,
               levels: str = "0, 1") -> tuple[torch.Tensor]:
        refinement = refinement_from_widgets(threshold=threshold, fill_holes=fill_holes, keep_largest=keep_largest,
                                             min_area=min_area, grow=grow, feather=feather, invert=invert, levels=levels)
        return (apply_refinement(mask, refinement).to(comfy_runtime.output_device()),)
