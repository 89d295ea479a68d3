"""``rmbg remove``: its options, the files-to-folder job (or the Ray engine) and the stdin-to-stdout stream."""

from __future__ import annotations

import argparse
import io
import os
import sys
from contextlib import suppress
from pathlib import Path
from typing import Any

from ..batch import iter_remove_background
from ..edges.compose import parse_color
from ..files import check_writable_folder
from ..formats import OUTPUT_FORMATS, PNG_COMPRESSIONS, OutputFormat, png_format
from .arguments import (EXIT_FAILED, EXIT_OK, STDIN, UsageError, add_edge_arguments, add_model_arguments, edge_options,
                        model_from, non_negative_float, non_negative_int, positive_float, positive_int)
from .interrupts import EXIT_INTERRUPTED
from .jobs import Failure, Plan, Summary, plan_job, run_tasks
from .report import Reporter, print_message


def add_remove_command(subparsers: Any) -> None:
    """``rmbg remove INPUT... -o OUT_DIR``: cutouts, masks or composites for many images."""
    remove = subparsers.add_parser(
        "remove", help="remove the background of images, folders or globs",
        description="Remove the background of every image named (files, folders, glob patterns). "
                    "Outputs are <stem>.<format> in OUT_DIR; existing ones are skipped, so a rerun resumes.",
        epilog="exit codes: 0 all done, 1 some inputs failed, 2 usage or setup error, 130 interrupted")
    remove.add_argument("inputs", nargs="+", metavar="INPUT",
                        help="image file, folder or glob pattern; '-' reads one image on stdin and writes "
                             "the result to stdout")
    remove.add_argument("-o", "--output-dir", metavar="OUT_DIR", help="folder for the outputs (created if needed)")
    remove.add_argument("-r", "--recursive", action="store_true",
                        help="look in subfolders too and keep their layout under OUT_DIR")
    remove.add_argument("--overwrite", action="store_true", help="redo outputs that already exist")
    output = remove.add_argument_group("output")
    output.add_argument("--mask-only", action="store_true", help="write the greyscale mask instead of a cutout")
    output.add_argument("--background", metavar="COLOR",
                        help="composite onto this colour ('#RRGGBB') instead of a transparent cutout")
    output.add_argument("--format", choices=list(OUTPUT_FORMATS), default="png",
                        help="output format (default: png; webp is lossless; jpg needs --background)")
    output.add_argument("--png-compression", choices=PNG_COMPRESSIONS, metavar="rle|0-9",
                        help="PNG's zlib setting, lossless either way: rle (default: zlib's run-length strategy, "
                             "about level 6's size in a quarter of its time on photos) or a level, 0 (none) to 9 "
                             "(smallest, slowest)")
    add_edge_arguments(remove)
    add_model_arguments(remove)
    speed = remove.add_argument_group("performance")
    speed.add_argument("--batch-size", type=positive_int, default=1, metavar="N",
                       help="images per forward pass (default: 1)")
    speed.add_argument("--workers", type=non_negative_int, default=2, metavar="N",
                       help="threads decoding and encoding alongside the model; 0 for none (default: 2)")
    add_engine_arguments(remove)
    remove.add_argument("--json", action="store_true",
                        help="print a JSON summary on stdout (on stderr with '-')")
    remove.set_defaults(handler=run_remove)


def add_engine_arguments(parser: argparse.ArgumentParser) -> None:
    """--engine and the Ray cluster options (README "At scale (Ray)")."""
    group = parser.add_argument_group("engine")
    group.add_argument("--engine", choices=["local", "ray"], default="local",
                       help="local: this process (default); ray: a Ray Data job (pip install 'rmbg-kit[ray]'), "
                            "where INPUT and OUT_DIR may also be URIs (s3://, gs://, file://...)")
    group.add_argument("--address", metavar="ADDR",
                       help="Ray cluster to join (default: $RAY_ADDRESS, else one 'ray start' runs on this machine, "
                            "else a new local one)")
    group.add_argument("--num-workers", type=positive_int, metavar="N",
                       help="model actors (default: as many as the cluster's CPUs, or GPUs, allow)")
    group.add_argument("--gpus-per-worker", type=non_negative_float, metavar="G",
                       help="GPUs per actor; above 0 the actors run on GPUs in float16 (default: 0, the CPU)")
    group.add_argument("--cpus-per-worker", type=positive_float, metavar="C",
                       help="CPUs per actor, which are its torch threads (default: 1)")


def run_remove(args: argparse.Namespace) -> int:
    """The ``remove`` handler: check options, then a folder job (here or on Ray) or a stdin-to-stdout conversion."""
    output_format = checked_output_format(args)
    edges = edge_options(args)
    if args.engine == "ray":
        return run_with_ray(args, output_format, edges)
    check_local_engine(args)
    if STDIN in args.inputs:
        return remove_stream(args, output_format, edges)
    out_dir = output_folder(args.output_dir)
    reporter = Reporter(sys.stderr)
    plan = plan_job(args.inputs, out_dir, suffix=output_format.suffix, recursive=args.recursive,
                    overwrite=args.overwrite)
    if plan.tasks:
        check_output_folder(out_dir)
    summary = report_plan(plan, reporter)
    if plan.tasks:
        model = model_from(args)
        reporter.start(len(plan.tasks))
        run_tasks(plan.tasks, summary, model=model, output_format=output_format, return_mask=args.mask_only,
                  background=args.background, **edges, batch_size=args.batch_size, workers=args.workers,
                  input_size=args.input_size, on_done=reporter.done)
    return finish_job(summary, reporter, args.json)


def output_folder(text: str | None) -> Path:
    """``-o``'s folder, refused at once if it is missing or names a file."""
    if text is None:
        raise UsageError("-o/--output-dir is required (only '-' writes to stdout)")
    out_dir = Path(text)
    if out_dir.exists() and not out_dir.is_dir():
        raise UsageError(f"{out_dir}: output path exists and is not a folder")
    return out_dir


def report_plan(plan: Plan, reporter: Reporter) -> Summary:
    """Print the plan's notes and failures (inputs that name nothing) and start the job's summary."""
    for note in plan.notes:
        reporter.note(note)
    for failure in plan.failures:
        reporter.failed(failure.error)
    return Summary(skipped=len(plan.skipped), failures=list(plan.failures))


def finish_job(summary: Summary, reporter: Reporter, json_summary: bool) -> int:
    """Print the closing summary (JSON on stdout with ``--json``) and return the exit code."""
    reporter.summary(summary.finish(), sys.stdout if json_summary else None)
    return exit_code(summary)


def run_with_ray(args: argparse.Namespace, output_format: OutputFormat, edges: dict[str, Any]) -> int:
    """``--engine ray``: the same job on a Ray cluster (:mod:`rmbg_core.ray`, imported only here)."""
    try:
        from ..ray.command import run_remove_on_ray
    except ModuleNotFoundError as exc:
        if (exc.name or "").split(".")[0] not in ("ray", "pyarrow"):
            raise
        raise UsageError(f"--engine ray needs Ray Data ({exc.name} is not installed): "
                         "pip install 'rmbg-kit[ray]'") from None
    return run_remove_on_ray(args, output_format, edges)


def check_local_engine(args: argparse.Namespace) -> None:
    """Refuse Ray's options without ``--engine ray`` (they would be silently ignored)."""
    for option in ("address", "num_workers", "gpus_per_worker", "cpus_per_worker"):
        if getattr(args, option) is not None:
            raise UsageError(f"--{option.replace('_', '-')} needs --engine ray")


def check_output_folder(out_dir: Path) -> None:
    """Fail at once, before the model loads, if outputs cannot be written to (or below) ``out_dir``."""
    try:
        check_writable_folder(out_dir)
    except OSError as exc:
        raise UsageError(f"{out_dir}: cannot write outputs to this folder ({exc.strerror or exc})") from None


def remove_stream(args: argparse.Namespace, output_format: OutputFormat, edges: dict[str, Any]) -> int:
    """``rmbg remove -``: one image from stdin, the result to stdout; messages stay on stderr.

    A closed, full or broken stdout is one ``rmbg: error:`` line and exit code 1.
    """
    if len(args.inputs) > 1:
        raise UsageError("'-' (stdin) cannot be combined with other inputs")
    if args.output_dir is not None:
        raise UsageError("'-' writes its result to stdout; drop -o/--output-dir")
    if sys.stdin is None:
        raise UsageError("'-' reads the image on stdin, which is closed")
    summary = Summary()
    if sys.stdout is None:
        return stdout_failed(summary, "stdout is closed", args.json)
    if sys.stdout.isatty():
        raise UsageError("refusing to write image data to a terminal; redirect stdout to a file or a pipe")
    source = io.BytesIO(sys.stdin.buffer.read())
    source.name = "<stdin>"
    reporter = Reporter(sys.stderr)
    result = next(iter_remove_background([source], model=model_from(args), return_mask=args.mask_only,
                                         background=args.background, **edges, workers=0,
                                         input_size=args.input_size))
    if not result.ok:
        summary.failures.append(Failure(source.name, result.error))
        reporter.failed(result.error)
        return finish_stream(summary, args.json)
    try:
        sys.stdout.buffer.write(output_format.encode(result.image))
        sys.stdout.buffer.flush()
    except OSError as exc:  # EPIPE (the reader is gone), ENOSPC (/dev/full), EIO...
        discard_stdout()
        return stdout_failed(summary, exc.strerror or str(exc), args.json)
    summary.written = 1
    return finish_stream(summary, args.json)


def stdout_failed(summary: Summary, reason: str, json_summary: bool) -> int:
    """Report that the result could not go to stdout (one ``rmbg: error:`` line) and finish the run."""
    message = f"cannot write the result to stdout ({reason})"
    summary.failures.append(Failure("<stdout>", message))
    print_message(f"error: {message}", sys.stderr)
    return finish_stream(summary, json_summary)


def discard_stdout() -> None:
    """Point stdout at the null device after a failed write, so the interpreter's last flush cannot fail again.

    Python's advice for BrokenPipeError: data still buffered would be flushed at exit and print "Exception
    ignored ... BrokenPipeError" (CPython 3.11 drops the buffer of a failed flush; this does not rely on it).
    """
    with suppress(OSError, ValueError):  # no file descriptor (a replaced sys.stdout): nothing to protect
        descriptor = sys.stdout.fileno()
        null = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(null, descriptor)
        finally:
            os.close(null)


def finish_stream(summary: Summary, json_summary: bool) -> int:
    """End a ``-`` run: the JSON summary on stderr if asked for, and the exit code."""
    summary.finish()
    if json_summary:
        Reporter(sys.stderr).summary(summary, sys.stderr)
    return exit_code(summary)


def checked_output_format(args: argparse.Namespace) -> OutputFormat:
    """The output format, after refusing combinations that cannot be written."""
    if args.mask_only and args.background is not None:
        raise UsageError("--mask-only and --background cannot be combined (a mask has no background)")
    if args.format == "jpg" and args.background is None:
        raise UsageError("--format jpg needs --background: JPEG has no transparency")
    if args.background is not None:
        parse_color(args.background)
    if args.png_compression is not None:
        if args.format != "png":
            raise UsageError(f"--png-compression applies to --format png, not {args.format}")
        return png_format(args.png_compression)
    return OUTPUT_FORMATS[args.format]


def exit_code(summary: Summary) -> int:
    if summary.interrupted:
        return EXIT_INTERRUPTED
    return EXIT_FAILED if summary.failures else EXIT_OK
