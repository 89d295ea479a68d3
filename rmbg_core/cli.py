"""The ``rmbg`` command line: a thin adapter over rmbg_core (subcommands register themselves here)."""

from __future__ import annotations

import argparse
import sys
from typing import Callable, Sequence

from .errors import RMBGError
from .version import __version__
from .weights import DEFAULT_SOURCE

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
Command = Callable[[argparse.Namespace], int]


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every subcommand; each sets ``handler`` to its run function."""
    parser = argparse.ArgumentParser(
        prog="rmbg",
        description="Background removal with BRIA RMBG-1.4, faithful to the model card.",
    )
    parser.add_argument("--version", action="version", version=f"rmbg {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    export = subparsers.add_parser(
        "export", help="write a hub-ready transformers folder (remote code + weights + model card)",
        description="Write OUT_DIR: config.json, flat .py files, fp32 model.safetensors and a README, "
                    "loadable with pipeline('image-segmentation', model=OUT_DIR, trust_remote_code=True).")
    export.add_argument("--model", default=DEFAULT_SOURCE,
                        help="checkpoint: hub repo id, folder or file (default: %(default)s)")
    export.add_argument("--revision", help="hub revision of --model")
    export.add_argument("--overwrite", action="store_true", help="replace files already in OUT_DIR")
    export.add_argument("out_dir", metavar="OUT_DIR", help="folder to write (created if missing)")
    export.set_defaults(handler=run_export)
    return parser


def run_export(args: argparse.Namespace) -> int:
    """``rmbg export``: write the hub-ready folder and say what was written."""
    from .export import export_model

    written = export_model(args.model, args.out_dir, overwrite=args.overwrite, revision=args.revision)
    print(f"rmbg: exported {args.model} to {args.out_dir} ({len(written)} files)")
    return EXIT_OK


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
