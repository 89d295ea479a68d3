"""The ``rmbg`` command: the parser with every subcommand, and running the chosen one.

Each subcommand is one ``add_*_command(subparsers)`` function listed in ``COMMANDS`` (in :mod:`.remove`,
:mod:`.export`, :mod:`rmbg_core.serve.command`); it sets ``handler`` (args -> exit code) with
``set_defaults``. Shared option groups live in :mod:`.arguments`, so every subcommand spells them alike.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any, Callable, Sequence

from ..errors import DeviceError, HubAccessError, RMBGError, either
from ..version import __version__
from .arguments import EXIT_USAGE
from .export import add_export_command
from .interrupts import EXIT_INTERRUPTED, interrupt_guard
from .remove import add_remove_command
from .report import print_message

Command = Callable[[argparse.Namespace], int]


def add_serve_command(subparsers: Any) -> None:
    """``rmbg serve``: the HTTP service; its options live in :mod:`rmbg_core.serve.command`."""
    from ..serve.command import add_serve_command as add_serve

    add_serve(subparsers)


def cli_message(exc: RMBGError) -> str:
    """A core error in this command's words: the core's neutral problem, then the advice as flags."""
    if isinstance(exc, HubAccessError) and exc.advice:
        return f"{exc.problem}; or pass --model PATH (a local checkpoint file or folder)"
    if isinstance(exc, DeviceError) and exc.choices:
        flag = "--" + exc.option.replace("_", "-")
        choices = (either(f"{flag} {choice}" for choice in exc.choices) if len(exc.choices) <= 2
                   else f"{flag} {either(exc.choices)}")
        return f"{exc.problem}; use {choices}"
    return str(exc)


COMMANDS: tuple[Callable[[Any], None], ...] = (add_remove_command, add_export_command, add_serve_command)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every subcommand; each sets ``handler`` to its run function."""
    parser = argparse.ArgumentParser(
        prog="rmbg",
        description="Background removal with BRIA RMBG-1.4, faithful to the model card.",
    )
    parser.add_argument("--version", action="version", version=f"rmbg {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for add_command in COMMANDS:
        add_command(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit code (0 done, 1 some inputs failed, 2 usage or setup error, 130 interrupted)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    handler: Command | None = getattr(args, "handler", None)
    if handler is None:
        parser.print_help()
        return EXIT_USAGE
    # SIGTERM (cron/CI timeouts, ``kill``) stops a run like Ctrl-C; later signals cannot cut its clean-up short.
    with interrupt_guard() as guard:
        try:
            if guard.received:  # a signal came while the command started and its interrupt got lost there
                raise KeyboardInterrupt
            code = handler(args)
        except RMBGError as exc:
            print_message(f"error: {cli_message(exc)}", sys.stderr)
            code = EXIT_USAGE
        except KeyboardInterrupt:
            print_message("interrupted", sys.stderr)
            code = EXIT_INTERRUPTED
        return EXIT_INTERRUPTED if guard.received else code

