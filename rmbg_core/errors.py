"""Exceptions raised by rmbg_core: one family, so front ends can print a clean one-line message."""

from __future__ import annotations


class RMBGError(Exception):
    """Base class: every error a user can cause (bad input, bad checkpoint, no access) derives from it."""


class InputError(RMBGError, ValueError):
    """An image could not be read or has an unsupported layout; the message names the input."""


class OptionError(RMBGError, ValueError):
    """An option (e.g. a mask refinement) has an invalid value; the message names it and the valid range."""


class CheckpointError(RMBGError):
    """A checkpoint is missing, unreadable, or does not match the RMBG-1.4 architecture."""


class HubAccessError(CheckpointError):
    """The Hugging Face Hub could not provide the weights (gated, offline, not found)."""


class DeviceError(RMBGError, ValueError):
    """A requested device or dtype is unknown or not available on this machine."""
