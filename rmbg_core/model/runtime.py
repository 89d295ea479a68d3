"""Device and dtype selection: turn user spellings ("auto", "cuda:1", "float16") into torch objects."""

from __future__ import annotations

import torch

from ..errors import DeviceError

DTYPES = {
    "float32": torch.float32,
    "fp32": torch.float32,
    "float16": torch.float16,
    "fp16": torch.float16,
    "half": torch.float16,
    "bfloat16": torch.bfloat16,
    "bf16": torch.bfloat16,
}
# The values offered in messages (each front end spells the option its own way).
DEVICE_CHOICES = ("auto", "cpu", "cuda", "cuda:N", "mps")
FALLBACK_DEVICES = ("cpu", "auto")
DTYPE_CHOICES = ("auto", "float32", "float16", "bfloat16")


def mps_available() -> bool:
    """True when Apple's Metal backend is built and usable."""
    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    """Return the torch device for ``device``; ``"auto"`` (or None) picks cuda, then mps, then cpu."""
    if device is None or (isinstance(device, str) and device.strip().lower() == "auto"):
        if torch.cuda.is_available():
            return torch.device("cuda")
        if mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        resolved = torch.device(device.strip().lower() if isinstance(device, str) else device)
    except (RuntimeError, TypeError) as exc:
        raise DeviceError(f"unknown device {device!r}", "device", DEVICE_CHOICES) from exc
    if resolved.type == "cuda":
        if not torch.cuda.is_available():
            raise DeviceError(f"device {device!r} requested but CUDA is not available "
                              "(no NVIDIA GPU, or a CPU-only torch build)", "device", FALLBACK_DEVICES)
        if resolved.index is not None and resolved.index >= torch.cuda.device_count():
            raise DeviceError(f"device {device!r} requested but only {torch.cuda.device_count()} "
                              "CUDA device(s) exist")
    elif resolved.type == "mps" and not mps_available():
        raise DeviceError(f"device {device!r} requested but the MPS backend is not available",
                          "device", FALLBACK_DEVICES)
    elif resolved.type not in ("cpu", "cuda", "mps", "xpu"):
        raise DeviceError(f"unsupported device {device!r}", "device", DEVICE_CHOICES)
    return resolved


def resolve_dtype(dtype: str | torch.dtype | None, device: torch.device) -> torch.dtype:
    """Return the compute dtype; ``"auto"`` is float16 on CUDA and float32 elsewhere (CPU, MPS)."""
    if dtype is None or (isinstance(dtype, str) and dtype.strip().lower() == "auto"):
        return torch.float16 if device.type == "cuda" else torch.float32
    if isinstance(dtype, torch.dtype):
        if dtype in DTYPES.values():
            return dtype
        raise DeviceError(f"unsupported dtype {dtype}", "dtype", DTYPE_CHOICES[1:])
    key = str(dtype).strip().lower().removeprefix("torch.")
    if key not in DTYPES:
        raise DeviceError(f"unknown dtype {dtype!r}", "dtype", DTYPE_CHOICES)
    return DTYPES[key]


def dtype_name(dtype: torch.dtype) -> str:
    """Short name of a dtype ("float16"), for messages and cache keys."""
    return str(dtype).removeprefix("torch.")
