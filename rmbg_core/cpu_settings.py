"""Process-wide CPU runtime defaults that only work if set before torch starts; imports no torch.

- ``OMP_WAIT_POLICY=PASSIVE``: OpenMP worker threads sleep between parallel regions instead of
  spinning. On a busy machine (other programs, or several workers) spinning threads burn the time
  slices their own siblings need, and one forward pass has hundreds of parallel regions: measured
  here with other jobs running, float32 went from 2.5x onnxruntime's time to 1.0x. On an idle
  machine the difference is within noise.
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

CPU_DEFAULTS = {"OMP_WAIT_POLICY": "PASSIVE", "THP_MEM_ALLOC_ENABLE": "1"}
OPT_OUT = "RMBG_NO_CPU_DEFAULTS"


def apply_cpu_defaults() -> dict[str, str]:
    """Set :data:`CPU_DEFAULTS` where unset, if torch is not imported yet; returns what was set."""
    if "torch" in sys.modules or os.environ.get(OPT_OUT, "").strip() not in ("", "0"):
        return {}
    applied = {key: value for key, value in CPU_DEFAULTS.items() if key not in os.environ}
    os.environ.update(applied)
    return applied
