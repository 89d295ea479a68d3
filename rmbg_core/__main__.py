"""The ``rmbg`` command and ``python -m rmbg_core``: signal handling and CPU runtime defaults first, then the CLI.

The defaults (:mod:`rmbg_core.cpu.settings`) only take effect before torch is imported, and only a
program that owns its process should set them, so they are applied here and not on ``import rmbg_core``.
The stop signals are handled from here on too (:mod:`rmbg_core.cli.interrupts`), so a Ctrl-C while torch
and the model load is as clean as one during the job.
"""

from __future__ import annotations

import sys
from typing import Sequence

from .cli.interrupts import run_program
from .cpu.settings import apply_cpu_defaults


def main(argv: Sequence[str] | None = None) -> int:
    """Run :func:`rmbg_core.cli.main.main` as the process (see :func:`interrupts.run_program`); returns its exit code."""

    def run() -> int:
        apply_cpu_defaults()
        from .cli.main import main as run_cli

        return run_cli(argv)

    return run_program(run)


if __name__ == "__main__":
    sys.exit(main())
