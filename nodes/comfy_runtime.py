"""ComfyUI's runtime services, when the nodes run inside ComfyUI: devices, progress, Cancel.

Outside ComfyUI (unit tests, scripts) ``comfy`` is not importable and every helper falls back to
rmbg_core's own choices, so the nodes stay plain callables.
"""

from __future__ import annotations

from typing import Callable

import torch

from ..rmbg_core.model.runtime import resolve_device, resolve_dtype

try:
    import comfy.model_management as model_management
    import comfy.utils as comfy_utils
except ImportError:  # not running inside ComfyUI
    model_management = None
    comfy_utils = None


def in_comfyui() -> bool:
    """True when ComfyUI's model management is available."""
    return model_management is not None


def default_device() -> torch.device:
    """ComfyUI's compute device (honours --cpu, --directml, ...); rmbg_core's "auto" outside ComfyUI."""
    if model_management is not None:
        return model_management.get_torch_device()
    return resolve_device("auto")


def offload_device(load_device: torch.device) -> torch.device:
    """Where ComfyUI parks the weights when it needs the memory: its usual offload device."""
    if model_management is None or load_device.type == "cpu":
        return torch.device("cpu")
    return model_management.unet_offload_device()


def auto_dtype(device: torch.device) -> torch.dtype:
    """float16 on CUDA, float32 elsewhere (rmbg_core); on CUDA, ComfyUI may veto float16
    (--force-fp32, GPUs where float16 is slow or broken)."""
    dtype = resolve_dtype("auto", device)
    if model_management is not None and device.type == "cuda" and dtype == torch.float16:
        if not model_management.should_use_fp16(device):
            return torch.float32
    return dtype


def output_device() -> torch.device:
    """Where node outputs live (ComfyUI's intermediate device: the CPU unless --gpu-only)."""
    if model_management is not None:
        return model_management.intermediate_device()
    return torch.device("cpu")


def progress(total: int) -> Callable[[int, int], None]:
    """A ``callback(done, total)`` for ``RMBGModel.predict``: advances ComfyUI's progress bar and
    raises ComfyUI's InterruptProcessingException when the user pressed Cancel."""
    bar = comfy_utils.ProgressBar(total) if comfy_utils is not None else None

    def callback(done: int, total: int) -> None:
        if bar is not None:
            bar.update_absolute(done, total)
        if model_management is not None:
            model_management.throw_exception_if_processing_interrupted()

    return callback
