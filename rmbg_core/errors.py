"""Exceptions raised by rmbg_core: one family, so front ends can print a clean one-line message.

Every class is also a ``ValueError``: remote code (an exported folder loaded with
``trust_remote_code=True``) runs its own copy of this module, whose classes are not rmbg_core's, and
``except ValueError`` is the one clause that catches them in every copy.
"""

from __future__ import annotations

from typing import Iterable


class RMBGError(ValueError):
    """Base class: every error a user can cause (bad input, bad checkpoint, no access) derives from it."""


class InputError(RMBGError):
    """An image could not be read or has an unsupported layout; the message names the input."""


class OptionError(RMBGError):
    """An option (e.g. a mask refinement) has an invalid value; the message names it and the valid range."""


class CheckpointError(RMBGError):
    """A checkpoint is missing, unreadable, or does not match the RMBG-1.4 architecture."""


class HubAccessError(CheckpointError):
    """The Hugging Face Hub could not provide the weights (gated, offline, unreachable, not found).

    ``problem`` says what is wrong in words that hold in every front end; ``advice``, when there is
    one, is the Python API's way round it and ends the message. Other front ends put their own words in
    its place (the CLI: ``--model PATH``).
    """

    def __init__(self, problem: str, advice: str = "") -> None:
        super().__init__(f"{problem}; {advice}" if advice else problem)
        self.problem, self.advice = problem, advice


class DeviceError(RMBGError):
    """A requested device or dtype is unknown or not available on this machine.

    ``problem`` says so; ``option`` (``"device"`` or ``"dtype"``) and ``choices`` name the values that
    would work, which the message lists neutrally (``use device 'cpu' or 'auto'``) and front ends
    in their own syntax (the CLI: ``--device cpu``).
    """

    def __init__(self, problem: str, option: str = "", choices: tuple[str, ...] = ()) -> None:
        advice = f"; use {option} {either(repr(choice) for choice in choices)}" if choices else ""
        super().__init__(problem + advice)
        self.problem, self.option, self.choices = problem, option, tuple(choices)


def either(words: Iterable[str]) -> str:
    """``"a"``, ``"a or b"``, ``"a, b or c"``: alternatives in a message."""
    words = list(words)
    return " or ".join(words) if len(words) <= 2 else f"{', '.join(words[:-1])} or {words[-1]}"


def first_line(exc: BaseException, limit: int = 200) -> str:
    """The first non-empty line of an exception's message (its type name if it has none), shortened."""
    line = next((line.strip() for line in str(exc).splitlines() if line.strip()), type(exc).__name__)
    return line if len(line) <= limit else line[:limit - 3] + "..."
