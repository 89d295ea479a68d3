"""Process-wide CPU settings read from the environment; imports no torch.

- ``GOMP_SPINCOUNT=1000``: OpenMP (libgomp) worker threads spin about 10 microseconds after a
  parallel region, then sleep, instead of about 3 ms. One forward pass has hundreds of parallel
  regions with short gaps between them: the short spin catches those, and on a busy machine (other
  programs, or several workers) the threads do not burn the time slices their siblings need
  (measurements: benchmarks/README.md). Not set when you set ``OMP_WAIT_POLICY``.
- ``THP_MEM_ALLOC_ENABLE=1``: torch backs large CPU tensors with transparent huge pages, so the
  hundreds of MB of fresh activations of each forward pass take 512x fewer page faults.

They are defaults that only work if set before torch starts: a value already in the environment wins,
and ``RMBG_NO_CPU_DEFAULTS=1`` turns them off. The ``rmbg`` command applies them at its start
(:mod:`rmbg_core.__main__`); ``import rmbg_core`` does not touch the environment. A program of your
own can call :func:`apply_cpu_defaults` before it imports torch; once torch is imported its OpenMP
runtime has read its settings, so nothing is changed then (set the variables in the environment
instead, e.g. for ComfyUI).

``RMBG_ACCELERATE=0`` makes every front end load its network without the CPU accelerator
(:func:`accelerate_by_default`), as ``load_model(..., accelerate=False)`` does.
"""

from __future__ import annotations

import os
import sys

CPU_DEFAULTS = {"GOMP_SPINCOUNT": "1000", "THP_MEM_ALLOC_ENABLE": "1"}
# A spin count of our own would override the wait policy a user chose.
SKIP_IF_SET = {"GOMP_SPINCOUNT": "OMP_WAIT_POLICY"}
OPT_OUT = "RMBG_NO_CPU_DEFAULTS"
ACCELERATE_VARIABLE = "RMBG_ACCELERATE"
_OFF = ("0", "false", "no", "off")


def apply_cpu_defaults() -> dict[str, str]:
    """Set :data:`CPU_DEFAULTS` where unset, if torch is not imported yet; returns what was set."""
    if "torch" in sys.modules or os.environ.get(OPT_OUT, "").strip() not in ("", "0"):
        return {}
    applied = {key: value for key, value in CPU_DEFAULTS.items()
               if key not in os.environ and not (key in SKIP_IF_SET and SKIP_IF_SET[key] in os.environ)}
    os.environ.update(applied)
    return applied


def accelerate_by_default() -> bool:
    """False when ``RMBG_ACCELERATE`` is 0 / false / no / off, else True (the accelerator's default)."""
    return os.environ.get(ACCELERATE_VARIABLE, "").strip().lower() not in _OFF


def resolve_accelerate(accelerate: bool | None) -> bool:
    """``accelerate`` as given, or the environment's default for None."""
    return accelerate_by_default() if accelerate is None else bool(accelerate)
