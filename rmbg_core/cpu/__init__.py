"""The CPU accelerator: IS-Net's plain blocks computed by fused oneDNN kernels, with BatchNorm folded,
Winograd convolutions for the deep layers and activation buffers reused across forward passes.

``accelerate(network)`` installs it (one call; :mod:`.accelerator`), ``restore_plain(network)`` removes
it, ``load_model(..., accelerate=False)`` or ``RMBG_ACCELERATE=0`` never installs it. It replaces the
blocks' processors, never their modules, weights or names (see :mod:`rmbg_core.model.network`), and checks
the private torch ops it rests on once per process (:mod:`.self_check`): if they fail, it stays off.

This package's ``__init__`` and :mod:`.settings` import no torch (the ``rmbg`` command applies the
process settings before torch starts); the other names load on first use.
"""

from __future__ import annotations

from typing import Any

from .settings import accelerate_by_default, apply_cpu_defaults

_FROM_ACCELERATOR = ("accelerate", "is_accelerated", "restore_plain")

__all__ = sorted([*_FROM_ACCELERATOR, "accelerate_by_default", "apply_cpu_defaults"])


def __getattr__(name: str) -> Any:
    if name not in _FROM_ACCELERATOR:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from . import accelerator  # imports torch: only when one of its names is asked for

    return getattr(accelerator, name)
