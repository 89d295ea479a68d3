"""Exceptions raised by rmbg_core: one family, so front ends can print a clean one-line message.

Every class is also a ``ValueError``: remote code (an exported folder loaded with
``trust_remote_code=True``) runs its own copy of this module, whose classes are not rmbg_core's, and
``except ValueError`` is the one clause that catches them in every copy.
"""

from __future__ import annotations


class RMBGError(ValueError):
    """Base class: every error a user can cause (bad input, bad checkpoint, no access) derives from it."""


class InputError(RMBGError):
    """An image could not be read or has an unsupported layout; the message names the input."""


class OptionError(RMBGError):
    """An option (e.g. a mask refinement) has an invalid value; the message names it and the valid range."""


class CheckpointError(RMBGError):
    """A checkpoint is missing, unreadable, or does not match the RMBG-1.4 architecture."""


class HubAccessError(CheckpointError):
    """The Hugging Face Hub could not provide the weights (gated, offline, not found)."""


class DeviceError(RMBGError):
    """A requested device or dtype is unknown or not available on this machine."""
