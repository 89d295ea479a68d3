"""Process-wide CPU runtime defaults that only work if set before torch starts; imports no torch.

- ``GOMP_SPINCOUNT=1000``: OpenMP (libgomp) worker threads spin about 10 microseconds after a
  parallel region, then sleep, instead of about 3 ms. One forward pass has hundreds of parallel
  regions with short gaps between them: the short spin catches those, and on a busy machine (other
  programs, or several workers) the threads do not burn the time slices their siblings need.
  Measured on 2 cores at batch 1: idle, 785-796 ms per image against 802-812 ms with threads that
  never spin (``OMP_WAIT_POLICY=PASSIVE``) and 775 ms with libgomp's default; beside a busy process,
  1420 ms against 1429 ms (passive) and 2378 ms (default). Not set when you set ``OMP_WAIT_POLICY``.
- ``THP_MEM_ALLOC_ENABLE=1``: torch backs large CPU tensors with transparent huge pages, so the
  hundreds of MB of fresh activations of each forward pass take 512x fewer page faults.

They are defaults: a value already in the environment wins, and ``RMBG_NO_CPU_DEFAULTS=1`` turns
them off. The ``rmbg`` command applies them at its start (:mod:`rmbg_core.__main__`); ``import
rmbg_core`` does not touch the environment. A program of your own can call
:func:`apply_cpu_defaults` before it imports torch; once torch is imported its OpenMP runtime has read
its settings, so nothing is changed then (set the variables in the environment instead, e.g. for ComfyUI).
"""

from __future__ import annotations

import os
import sys

CPU_DEFAULTS = {"GOMP_SPINCOUNT": "1000", "THP_MEM_ALLOC_ENABLE": "1"}
# A spin count of our own would override the wait policy a user chose.
SKIP_IF_SET = {"GOMP_SPINCOUNT": "OMP_WAIT_POLICY"}
OPT_OUT = "RMBG_NO_CPU_DEFAULTS"


def apply_cpu_defaults() -> dict[str, str]:
    """Set :data:`CPU_DEFAULTS` where unset, if torch is not imported yet; returns what was set."""
    if "torch" in sys.modules or os.environ.get(OPT_OUT, "").strip() not in ("", "0"):
        return {}
    applied = {key: value for key, value in CPU_DEFAULTS.items()
               if key not in os.environ and not (key in SKIP_IF_SET and SKIP_IF_SET[key] in os.environ)}
    os.environ.update(applied)
    return applied
