"""Checks of the whole-number options every entry point shares (``batch_size``, ``workers``).

One rule for the Python API, the model and the command line, so a bad value is the same
:class:`OptionError` (or argparse message) everywhere, raised before any work starts.
"""

from __future__ import annotations

import operator

from .errors import OptionError


def is_int(value: object) -> bool:
    """True for Python and numpy integers, False for bools, floats and strings."""
    if isinstance(value, bool):
        return False
    try:
        operator.index(value)
    except TypeError:
        return False
    return True


def count_problem(value: object, minimum: int) -> str | None:
    """Why ``value`` is not a whole number of at least ``minimum`` (e.g. "must be 1 or more, got 0"), or None."""
    if not is_int(value):
        return f"must be a whole number, got {value!r}"
    if operator.index(value) < minimum:
        return f"must be {minimum} or more, got {value}"
    return None


def check_count(value: object, name: str, minimum: int) -> int:
    """``value`` as an int if it is a whole number >= ``minimum``, else an :class:`OptionError` naming ``name``."""
    problem = count_problem(value, minimum)
    if problem is not None:
        raise OptionError(f"{name} {problem}")
    return operator.index(value)
