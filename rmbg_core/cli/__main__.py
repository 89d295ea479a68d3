"""``python -m rmbg_core.cli``: the ``rmbg`` command, guarded against stop signals from here to its exit."""

import sys

from .interrupts import run_program
from .main import main

sys.exit(run_program(main))
