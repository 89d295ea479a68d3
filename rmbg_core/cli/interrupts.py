"""Ctrl-C and SIGTERM for the ``rmbg`` command: the first one stops the run, later ones cannot cut its clean-up.

The first SIGINT or SIGTERM raises ``KeyboardInterrupt`` in the main thread, which a job turns into a
clean stop (writes in flight finish, temp files go, exit 130). Any later one is recorded and ignored, so
a second Ctrl-C, or a supervisor's SIGTERM after it, cannot interrupt that clean-up. Once the command has
its exit code, the signals are ignored until the process ends (thread joins, ``atexit``, and the last
moments after Python has put back the default handlers). Imports no torch, so the command installs it
first thing.
"""

from __future__ import annotations

import signal
import sys
import threading
from contextlib import contextmanager
from types import FrameType
from typing import Any, Callable, Iterator

EXIT_INTERRUPTED = 130
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class InterruptGuard:
    """Handler of the stop signals: records each; the first raises ``KeyboardInterrupt`` unless ``raising`` is off."""

    def __init__(self) -> None:
        self.received: list[int] = []
        self.raising = True
        self.replaced: dict[int, Any] = {}

    def __call__(self, signum: int, frame: FrameType | None) -> None:
        self.received.append(signum)
        if self.raising and len(self.received) == 1:
            raise KeyboardInterrupt

    def install(self) -> "InterruptGuard":
        """Handle the stop signals that are not ignored (a background job ignores SIGINT: left so)."""
        for signum in STOP_SIGNALS:
            if signal.getsignal(signum) is not signal.SIG_IGN:
                self.replaced[signum] = signal.signal(signum, self)
        return self

    def restore(self) -> None:
        """Put back the handlers :meth:`install` replaced."""
        for signum, handler in self.replaced.items():
            signal.signal(signum, handler)

    def ignore_from_now(self) -> None:
        """Never raise again, and have the OS ignore the signals this guard handled."""
        self.raising = False
        for signum in self.replaced:
            signal.signal(signum, signal.SIG_IGN)


@contextmanager
def interrupt_guard() -> Iterator[InterruptGuard]:
    """The guard already installed (by :func:`run_program`), or one installed for the block and removed after it.

    Off the main thread (where signal handlers cannot be set) the guard is not installed.
    """
    for signum in STOP_SIGNALS:
        current = signal.getsignal(signum)
        if isinstance(current, InterruptGuard):
            yield current
            return
    guard = InterruptGuard()
    if threading.current_thread() is threading.main_thread():
        guard.install()
    try:
        yield guard
    finally:
        guard.restore()


def run_program(main: Callable[[], int]) -> int:
    """Run a command's ``main`` as the whole process, guarded from here to its exit; 130 once a signal came."""
    guard = InterruptGuard().install()
    try:
        code = main()
    except KeyboardInterrupt:  # before the command's own handling started (while importing it)
        print("rmbg: interrupted", file=sys.stderr)
        code = EXIT_INTERRUPTED
    try:
        guard.ignore_from_now()
    except KeyboardInterrupt:  # the first signal came just now; a guard raises only once
        guard.ignore_from_now()
    return EXIT_INTERRUPTED if guard.received else code
