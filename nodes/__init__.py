"""The ComfyUI nodes of rmbg-kit: thin adapters over rmbg_core."""

from .apply_mask import RMBGApplyMask
from .load_model import RMBGLoadModel
from .refine_mask import RMBGRefineMask
from .remove_background import RMBGRemoveBackground

NODE_CLASS_MAPPINGS = {
    "RMBGLoadModel": RMBGLoadModel,
    "RMBGRemoveBackground": RMBGRemoveBackground,
    "RMBGApplyMask": RMBGApplyMask,
    "RMBGRefineMask": RMBGRefineMask,
}
NODE_DISPLAY_NAME_MAPPINGS = {
    "RMBGLoadModel": "Load RMBG",
    "RMBGRemoveBackground": "Remove Background (RMBG)",
    "RMBGApplyMask": "Apply Mask (RMBG)",
    "RMBGRefineMask": "Refine Mask (RMBG)",
}
