"""rmbg_core: BRIA RMBG-1.4 background removal, faithful to the model card, for every front end.

Public API: :func:`load_model`, :func:`remove_background` (one image), :func:`iter_remove_background`
(many, in order, errors per item), :class:`RMBGModel`; edge tools :class:`Refinement` with
:func:`apply_refinement`, and :func:`estimate_foreground`.

The names are imported on first use, so ``import rmbg_core.cpu.settings`` (and the ``rmbg`` command's
start) can run before torch is imported.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .version import __version__

_PUBLIC = {
    "remove_background": "api",
    "RemovalResult": "batch",
    "iter_remove_background": "batch",
    "CheckpointError": "errors",
    "DeviceError": "errors",
    "HubAccessError": "errors",
    "InputError": "errors",
    "OptionError": "errors",
    "RMBGError": "errors",
    "estimate_foreground": "edges.foreground",
    "RMBGModel": "model.model",
    "load_model": "model.model",
    "Refinement": "edges.refine",
    "apply_refinement": "edges.refine",
}

__all__ = sorted([*_PUBLIC, "__version__"])

if TYPE_CHECKING:
    from .api import remove_background
    from .batch import RemovalResult, iter_remove_background
    from .edges.foreground import estimate_foreground
    from .edges.refine import Refinement, apply_refinement
    from .errors import CheckpointError, DeviceError, HubAccessError, InputError, OptionError, RMBGError
    from .model.model import RMBGModel, load_model


def __getattr__(name: str) -> Any:
    module = _PUBLIC.get(name)
    if module is None:
        raise AttributeError(f"module 'rmbg_core' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_PUBLIC})
