"""The ``rmbg`` command line: a thin adapter over rmbg_core (subcommands register themselves here)."""

from __future__ import annotations

import argparse
import sys
from typing import Callable, Sequence

from .errors import RMBGError
from .version import __version__

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
Command = Callable[[argparse.Namespace], int]


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every subcommand; each sets ``handler`` to its run function."""
    parser = argparse.ArgumentParser(
        prog="rmbg",
        description="Background removal with BRIA RMBG-1.4, faithful to the model card.",
    )
    parser.add_argument("--version", action="version", version=f"rmbg {__version__}")
    parser.add_subparsers(dest="command", metavar="COMMAND")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit code (0 done, 1 some inputs failed, 2 usage or setup error)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    handler: Command | None = getattr(args, "handler", None)
    if handler is None:
        parser.print_help()
        return EXIT_USAGE
    try:
        return handler(args)
    except RMBGError as exc:
        print(f"rmbg: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("rmbg: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
