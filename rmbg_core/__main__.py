"""The ``rmbg`` command and ``python -m rmbg_core``: CPU runtime defaults first, then the CLI.

The defaults (:mod:`rmbg_core.cpu.settings`) only take effect before torch is imported, and only a
program that owns its process should set them, so they are applied here and not on ``import rmbg_core``.
"""

from __future__ import annotations

import sys
from typing import Sequence

from .cpu.settings import apply_cpu_defaults


def main(argv: Sequence[str] | None = None) -> int:
    """Apply the CPU defaults, then run :func:`rmbg_core.cli.main`; returns its exit code."""
    apply_cpu_defaults()
    from .cli import main as run_cli

    return run_cli(argv)


if __name__ == "__main__":
    sys.exit(main())
