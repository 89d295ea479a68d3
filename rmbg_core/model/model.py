"""``RMBGModel``: a loaded network bound to a device and dtype, predicting masks batch-wise; ``load_model``."""

from __future__ import annotations

import os
import threading
import weakref
from typing import Callable, Iterable, Sequence, Union

import numpy as np
import torch

from ..cpu.settings import resolve_accelerate
from ..errors import InputError
from ..options import check_count
from .images import as_tensor, normalize_values, split_channels
from .inference import HALF_DTYPES, clear_buffers, prepare_network, release_buffers, set_head_dtype, share_weights
from .network import ISNet
from .processing import MODEL_INPUT_SIZE, postprocess, preprocess
from .runtime import dtype_name, resolve_device, resolve_dtype
from .weights import DEFAULT_SOURCE, build_network, locate_checkpoint, read_state_dict

__all__ = ["HALF_DTYPES", "ProgressCallback", "RMBGModel", "load_model", "set_head_dtype"]

ProgressCallback = Callable[[int, int], None]
ARRAYS = (torch.Tensor, np.ndarray)
ImageBatch = Union[torch.Tensor, np.ndarray, Sequence[Union[torch.Tensor, np.ndarray]]]


class RMBGModel:
    """The RMBG-1.4 "session": an :class:`ISNet` in eval mode on one device, in one dtype.

    ``predict`` takes channels-last images (ComfyUI's IMAGE layout) and returns masks at input size.
    The network is prepared for inference in place (:func:`rmbg_core.model.inference.prepare_network`): with
    ``accelerate`` (default: unless ``RMBG_ACCELERATE=0``) the CPU accelerator is installed, BatchNorm
    folded into the convolutions (its ``state_dict`` remains a valid checkpoint with the same outputs);
    weights channels-last on CUDA, side heads kept in float32 under a half-precision body.
    ``checkpoint`` is the file the weights came from (None for a network passed in), for the original
    tensors.
    """

    def __init__(self, network: ISNet, *, device: str | torch.device = "cpu",
                 dtype: torch.dtype = torch.float32, source: str = "<network>",
                 checkpoint: str | os.PathLike | None = None, accelerate: bool | None = None) -> None:
        self.network = network
        self.source = source
        self.checkpoint = checkpoint
        self.accelerate = resolve_accelerate(accelerate)
        self.device = torch.device("cpu")
        self.dtype = dtype
        # The network that load_model shares this one's weight tensors with (see there); None once moved.
        self._shares_weights_of: ISNet | None = None
        self.to(device, dtype)

    def __repr__(self) -> str:
        return f"RMBGModel(source={self.source!r}, device='{self.device}', dtype={dtype_name(self.dtype)})"

    def to(self, device: str | torch.device | None = None, dtype: str | torch.dtype | None = None) -> "RMBGModel":
        """Move (and optionally cast) this model's network in place, e.g. to offload it to the CPU; returns
        self. Other models, even ones sharing its weights (see :func:`load_model`), stay where they are."""
        target = self.device if device is None else _concrete(resolve_device(device))
        target_dtype = self.dtype if dtype is None else resolve_dtype(dtype, target)
        prepare_network(self.network, device=target, dtype=target_dtype, accelerate=self.accelerate)
        if (target, target_dtype) != (self.device, self.dtype):
            self._shares_weights_of = None  # its own tensors now: nothing to keep alive for sharing
        self.device, self.dtype = target, target_dtype
        return self

    def predict(self, images: ImageBatch, *, batch_size: int = 1,
                input_size: tuple[int, int] = MODEL_INPUT_SIZE, callback: ProgressCallback | None = None,
                keep_buffers: bool = True) -> torch.Tensor | list[torch.Tensor]:
        """Masks for a batch: (B, H, W, C) tensor in, (B, H, W) float32 masks in [0, 1] on the CPU out.

        A list of (H, W, C) tensors of different sizes gives a list of (H, W) masks; numpy arrays work
        as tensors do. C is 1-4 (grey, grey+alpha, RGB, RGBA; alpha is ignored); values are uint8 0-255
        or float 0-1 (files and PIL images go through ``remove_background`` instead). Work runs in
        chunks of ``batch_size`` so memory stays bounded; every mask is min-max normalised on its
        own, so results equal one-at-a-time. ``callback(done, total)`` runs after each chunk (it
        may raise to cancel). On the CPU the network keeps its activation buffers for the next call
        (about 250 MB per image of the largest batch so far, see :mod:`rmbg_core.cpu.buffer_pool`);
        ``keep_buffers=False`` gives them back when this call ends, for hosts that run other models
        between calls.
        """
        batch_size = check_count(batch_size, "batch_size", 1)
        try:
            return self._predict(images, batch_size, input_size, callback)
        finally:
            if not keep_buffers:
                clear_buffers(self.network)

    def _predict(self, images: ImageBatch, batch_size: int, input_size: tuple[int, int],
                 callback: ProgressCallback | None) -> torch.Tensor | list[torch.Tensor]:
        if isinstance(images, ARRAYS):
            images = as_tensor(images, "image batch")
            if images.dim() != 4:
                raise InputError(f"expected a (B, H, W, C) image batch, got shape {tuple(images.shape)}")
            rgb, _ = split_channels(_checked(images, "image batch"))
            masks = torch.empty(rgb.shape[:3], dtype=torch.float32)
            for start in range(0, len(rgb), batch_size):
                self._predict_same_size(rgb[start:start + batch_size], input_size, masks[start:start + batch_size])
                _report(callback, min(start + batch_size, len(rgb)), len(rgb))
            return masks
        items = [split_channels(_checked(image, f"image {i}", single=True))[0]
                 for i, image in enumerate(_array_items(images))]
        results: list[torch.Tensor] = []
        for start in range(0, len(items), batch_size):
            results.extend(self._predict_mixed_sizes(items[start:start + batch_size], input_size))
            _report(callback, len(results), len(items))
        return results

    @torch.inference_mode()
    def _predict_same_size(self, rgb: torch.Tensor, input_size: tuple[int, int], out: torch.Tensor) -> None:
        """Masks of one chunk, written into ``out`` (a CPU slice of the result)."""
        network_input = preprocess(rgb.to(self.device), input_size, self.dtype)
        prediction = self.network(network_input)
        del network_input
        if self.device.type == "cpu":
            release_buffers(self.network, out.numel() * out.element_size())
            postprocess(prediction, tuple(rgb.shape[1:3]), out=out)
        else:
            out.copy_(postprocess(prediction, tuple(rgb.shape[1:3])))

    @torch.inference_mode()
    def _predict_mixed_sizes(self, items: list[torch.Tensor], input_size: tuple[int, int]) -> list[torch.Tensor]:
        network_input = torch.cat([preprocess(item[None].to(self.device), input_size, self.dtype) for item in items])
        prediction = self.network(network_input)
        release_buffers(self.network, sum(item.shape[0] * item.shape[1] * 4 for item in items))
        return [postprocess(prediction[i:i + 1], tuple(item.shape[:2]))[0].cpu() for i, item in enumerate(items)]


def _array_items(images: object) -> list[torch.Tensor]:
    """The items of a list of (H, W, C) arrays or tensors as tensors; anything else is an :class:`InputError`."""
    if isinstance(images, (str, bytes, bytearray, os.PathLike)) or not isinstance(images, Iterable):
        raise InputError(f"expected a (B, H, W, C) tensor or array, or a list of (H, W, C) ones, got "
                         f"{type(images).__name__}; files and PIL images go through remove_background")
    items = list(images)
    for i, item in enumerate(items):
        if not isinstance(item, ARRAYS):
            raise InputError(f"image {i}: expected an (H, W, C) tensor or array, got {type(item).__name__}; "
                             "files and PIL images go through remove_background")
    return [as_tensor(item, f"image {i}") for i, item in enumerate(items)]


def _checked(images: torch.Tensor, name: str, single: bool = False) -> torch.Tensor:
    """Validate layout (channels last, C in 1-4) and values of an image tensor."""
    if single and images.dim() == 4 and images.shape[0] == 1:
        images = images[0]
    if images.dim() != (3 if single else 4) or images.shape[-1] not in (1, 2, 3, 4):
        raise InputError(f"{name}: expected channels-last {'(H, W, C)' if single else '(B, H, W, C)'} "
                         f"with C in 1-4, got shape {tuple(images.shape)}")
    if images.shape[-2] == 0 or images.shape[-3] == 0:
        raise InputError(f"{name}: image has zero size")
    return normalize_values(images.detach(), name)


def _report(callback: ProgressCallback | None, done: int, total: int) -> None:
    if callback is not None:
        callback(done, total)


def _concrete(device: torch.device) -> torch.device:
    """``cuda`` -> ``cuda:N`` (the current device), so device comparisons are exact."""
    if device.type == "cuda" and device.index is None:
        return torch.device("cuda", torch.cuda.current_device())
    return device


# The network each load's models share their weight tensors with, per checkpoint, device, dtype and
# accelerator setting: never handed out (no hooks, never moved), alive while a model uses its tensors.
_SHARED: "weakref.WeakValueDictionary[tuple, ISNet]" = weakref.WeakValueDictionary()
_SHARED_LOCK = threading.Lock()


def load_model(source: str | os.PathLike = DEFAULT_SOURCE, *, device: str | torch.device = "auto",
               dtype: str | torch.dtype = "auto", revision: str | None = None, token: str | bool | None = None,
               cache_dir: str | os.PathLike | None = None, local_files_only: bool | None = None,
               accelerate: bool | None = None, share: bool = True) -> RMBGModel:
    """Load RMBG-1.4 weights from a hub repo id, a folder or a checkpoint file onto ``device``.

    Every call returns a model of its own. ``accelerate``: install the CPU accelerator (default True
    unless ``RMBG_ACCELERATE=0``; False gives the plain PyTorch network). With ``share``, models loaded
    alike (same checkpoint, device, dtype and accelerator setting) share their weight tensors while
    they are alive: the file is read once and the memory held once. The shared tensors are read-only:
    moving or casting a model (``model.to``) gives it tensors of its own and leaves the others alone;
    writing into them in place would change every model sharing them (``share=False`` for a model that
    owns its tensors outright, e.g. for a host that moves ``model.network`` itself).
    """
    target = _concrete(resolve_device(device))
    target_dtype = resolve_dtype(dtype, target)
    accelerated = resolve_accelerate(accelerate)
    path = locate_checkpoint(source, revision=revision, token=token, cache_dir=cache_dir,
                             local_files_only=local_files_only)

    def loaded() -> ISNet:
        # Built in float32 so BatchNorm folds at full precision; prepare_network then casts and moves it.
        network = build_network(read_state_dict(path), torch.float32, source=os.fspath(path))
        return prepare_network(network, device=target, dtype=target_dtype, accelerate=accelerated)

    options = {"device": target, "dtype": target_dtype, "source": os.fspath(source), "checkpoint": path,
               "accelerate": accelerated}
    if not share:
        return RMBGModel(loaded(), **options)
    stat = path.stat()
    key = (os.fspath(path.resolve()), stat.st_size, stat.st_mtime_ns, str(target), target_dtype, accelerated)
    with _SHARED_LOCK:
        shared = _SHARED.get(key)
        if shared is None:
            shared = _SHARED[key] = loaded()
        model = RMBGModel(share_weights(shared), **options)
        model._shares_weights_of = shared
        return model
