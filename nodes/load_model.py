"""Load RMBG: an RMBG-1.4 checkpoint from ``models/rmbg`` (or BRIA's hub repo) onto a device."""

from __future__ import annotations

from ..rmbg_core.model.runtime import resolve_device
from . import comfy_runtime, model_folder
from .model_management import ManagedModel, load_managed
from .options import CATEGORY, MODEL_TYPE

DEVICES = ["auto", "cpu", "cuda", "mps"]
DTYPES = ["auto", "float32", "float16", "bfloat16"]

model_folder.register()


class RMBGLoadModel:
    """Loads the weights once; ComfyUI's model management moves them between devices afterwards."""

    DESCRIPTION = ("Loads a BRIA RMBG-1.4 checkpoint for Remove Background (RMBG). Put .safetensors/.pth files "
                   "in ComfyUI's models/rmbg folder, or pick briaai/RMBG-1.4 to download it there on first use "
                   "(a gated repo: accept its licence on huggingface.co and log in with `hf auth login`).")
    CATEGORY = CATEGORY
    FUNCTION = "load"
    RETURN_TYPES = (MODEL_TYPE,)
    RETURN_NAMES = ("rmbg_model",)
    OUTPUT_TOOLTIPS = ("The loaded model; connect it to Remove Background (RMBG).",)

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        return {
            "required": {
                "model": (model_folder.choices(), {
                    "default": model_folder.HUB_CHOICE,
                    "tooltip": "A checkpoint in models/rmbg, or briaai/RMBG-1.4 (downloaded into "
                               "models/rmbg/RMBG-1.4 the first time; needs access to the gated repo).",
                }),
                "device": (DEVICES, {
                    "default": "auto",
                    "tooltip": "'auto' = ComfyUI's device (the GPU unless ComfyUI runs with --cpu); or force one.",
                }),
                "dtype": (DTYPES, {
                    "default": "auto",
                    "tooltip": "'auto' = float16 on CUDA (unless ComfyUI says float16 is unsafe there), float32 "
                               "elsewhere. float32 on CPU matches BRIA's reference masks within one grey level.",
                }),
            },
        }

    def load(self, model: str, device: str = "auto", dtype: str = "auto") -> tuple[ManagedModel]:
        target = comfy_runtime.default_device() if device == "auto" else resolve_device(device)
        precision = comfy_runtime.auto_dtype(target) if dtype == "auto" else dtype
        return (load_managed(model_folder.locate(model), target, precision),)
