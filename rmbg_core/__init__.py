"""rmbg_core: BRIA RMBG-1.4 background removal, faithful to the model card, for every front end.

Public API: :func:`load_model`, :func:`remove_background` (one image), :func:`iter_remove_background`
(many, in order, errors per item), :class:`RMBGModel`; edge tools :class:`Refinement` with
:func:`apply_refinement`, and :func:`estimate_foreground`.
"""

from .api import remove_background
from .batch import RemovalResult, iter_remove_background
from .errors import CheckpointError, DeviceError, HubAccessError, InputError, OptionError, RMBGError
from .foreground import estimate_foreground
from .model import RMBGModel, load_model
from .refine import Refinement, apply_refinement
from .version import __version__

__all__ = [
    "CheckpointError",
    "DeviceError",
    "HubAccessError",
    "InputError",
    "OptionError",
    "RMBGError",
    "RMBGModel",
    "Refinement",
    "RemovalResult",
    "__version__",
    "apply_refinement",
    "estimate_foreground",
    "iter_remove_background",
    "load_model",
    "remove_background",
]
