"""Alias of :mod:`rmbg_core.cpu.settings` (the CPU runtime defaults), kept for ``rmbg_core.cpu_settings``
imports; like it, imports no torch."""

from __future__ import annotations

from .cpu.settings import (ACCELERATE_VARIABLE, CPU_DEFAULTS, OPT_OUT, SKIP_IF_SET, accelerate_by_default,
                           apply_cpu_defaults)

__all__ = ["ACCELERATE_VARIABLE", "CPU_DEFAULTS", "OPT_OUT", "SKIP_IF_SET", "accelerate_by_default",
           "apply_cpu_defaults"]
