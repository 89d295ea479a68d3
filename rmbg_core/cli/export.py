"""``rmbg export``: write a hub-ready transformers folder (the work is :mod:`rmbg_core.hub.export`)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from ..model.weights import DEFAULT_SOURCE
from .arguments import EXIT_OK, UsageError
from .report import print_message


def add_export_command(subparsers: Any) -> None:
    """``rmbg export``: a hub-ready transformers folder (remote code + weights + model card)."""
    export = subparsers.add_parser(
        "export", help="write a hub-ready transformers folder (remote code + weights + model card)",
        description="Write OUT_DIR: config.json, flat .py files, fp32 model.safetensors and a README, "
                    "loadable with pipeline('image-segmentation', model=OUT_DIR, trust_remote_code=True).")
    export.add_argument("--model", default=DEFAULT_SOURCE,
                        help="checkpoint: hub repo id, folder or file (default: %(default)s)")
    export.add_argument("--revision", help="hub revision of --model")
    export.add_argument("--overwrite", action="store_true",
                        help="replace an export already in OUT_DIR (other files there are kept)")
    export.add_argument("out_dir", metavar="OUT_DIR", help="folder to write (created if missing)")
    export.set_defaults(handler=run_export)


def run_export(args: argparse.Namespace) -> int:
    """``rmbg export``: write the hub-ready folder and say what was written."""
    from ..hub.export import ExportExistsError, export_model

    try:
        written = export_model(args.model, args.out_dir, overwrite=args.overwrite, revision=args.revision)
    except ExportExistsError as exc:
        raise UsageError(f"{exc.problem}; pass --overwrite to replace it") from None
    print_message(f"exported {args.model} to {args.out_dir} ({len(written)} files)", sys.stdout)
    return EXIT_OK
