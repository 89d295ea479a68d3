"""Hand RMBG weights to ComfyUI's model management, so ComfyUI can offload them when other models
need the memory and load them back before each run.

What flows on an ``RMBG_MODEL`` socket is a :class:`ManagedModel`: the rmbg_core model plus the
ComfyUI ``ModelPatcher`` that accounts for its weights. There is exactly one patcher per loaded
model, and :func:`load_managed` keeps one model per checkpoint, device and dtype while it is in use
(two loaders naming the same checkpoint share both), so ComfyUI never holds two handles on one set of
weights.
"""

from __future__ import annotations

import os
import threading
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..rmbg_core.model.model import RMBGModel, load_model
from ..rmbg_core.model.processing import MODEL_INPUT_SIZE
from . import comfy_runtime

try:
    import comfy.model_patcher as model_patcher
except ImportError:  # not running inside ComfyUI
    model_patcher = None

# Peak activation memory of one 1024x1024 image through IS-Net in float32 (measured on CPU: ~600 MB
# for one image, ~2.1 GB for four); ComfyUI frees this much besides the weights before a run.
ACTIVATION_BYTES_PER_IMAGE = 640 * 1024 * 1024


# ComfyUI's log names a managed model by its class: "Requested to load RMBG".
class RMBG(torch.nn.Module):
    """A plain module around the network: ModelPatcher sets bookkeeping attributes (``device``,
    ``model_loaded_weight_memory``, ...) on the module it manages, and they belong here, not on
    the network."""

    def __init__(self, network: torch.nn.Module) -> None:
        super().__init__()
        self.network = network

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.network(x)


@dataclass(frozen=True, eq=False)
class ManagedModel:
    """An RMBG-1.4 model as ComfyUI sees it: ``model`` (rmbg_core), its ``patcher`` (None outside
    ComfyUI) and the network's working resolution ``input_size`` (1024x1024 for RMBG-1.4)."""

    model: RMBGModel
    patcher: Any = None
    input_size: tuple[int, int] = MODEL_INPUT_SIZE

    def ready(self, batch_size: int = 1) -> RMBGModel:
        """The model with its weights on its device: ComfyUI may have offloaded them since the last
        run, so this asks it to load them back, freeing room for ``batch_size`` images of work."""
        if self.patcher is not None:
            pixels = self.input_size[0] * self.input_size[1] / (MODEL_INPUT_SIZE[0] * MODEL_INPUT_SIZE[1])
            work = int(batch_size * ACTIVATION_BYTES_PER_IMAGE * pixels * self.model.dtype.itemsize / 4)
            comfy_runtime.model_management.load_models_gpu([self.patcher], memory_required=work,
                                                           force_full_load=True)
        return self.model

    def __repr__(self) -> str:
        return f"ManagedModel({self.model!r})"


_PATCHERS: "weakref.WeakKeyDictionary[RMBGModel, Any]" = weakref.WeakKeyDictionary()
_PATCHERS_LOCK = threading.Lock()


def manage(model: RMBGModel) -> ManagedModel:
    """Wrap ``model`` for ComfyUI, reusing its patcher if it already has one (it lives as long as
    the model does)."""
    if model_patcher is None or not comfy_runtime.in_comfyui():
        return ManagedModel(model)
    with _PATCHERS_LOCK:
        patcher = _PATCHERS.get(model)
        if patcher is None:
            patcher = model_patcher.ModelPatcher(RMBG(model.network), load_device=model.device,
                                                 offload_device=comfy_runtime.offload_device(model.device))
            _PATCHERS[model] = patcher
    return ManagedModel(model, patcher)


_LOADED: "weakref.WeakValueDictionary[tuple, ManagedModel]" = weakref.WeakValueDictionary()
_LOADED_LOCK = threading.Lock()


def load_managed(checkpoint: Path, device: torch.device, dtype: str | torch.dtype) -> ManagedModel:
    """The managed model of ``checkpoint`` on ``device`` in ``dtype``: loaded once while in use.

    The model owns its weights (``share=False``): ComfyUI moves ``model.network`` between devices
    itself, and no other load may keep the tensors it moved away from alive.
    """
    stat = checkpoint.stat()
    key = (os.fspath(checkpoint.resolve()), stat.st_size, stat.st_mtime_ns, str(device), str(dtype))
    with _LOADED_LOCK:
        managed = _LOADED.get(key)
        if managed is None:
            managed = _LOADED[key] = manage(load_model(checkpoint, device=device, dtype=dtype, share=False))
        return managed
