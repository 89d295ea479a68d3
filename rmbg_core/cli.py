"""The ``rmbg`` command line: argument parsing and thin subcommand handlers over rmbg_core.

Each subcommand is one ``add_*_command(subparsers)`` function listed in ``COMMANDS``; it sets
``handler`` (args -> exit code) with ``set_defaults``. Shared option groups (model selection) are
helpers so every subcommand spells them the same way.
"""

from __future__ import annotations

import argparse
import io
import math
import os
import sys
from contextlib import suppress
from pathlib import Path
from typing import Any, Callable, Sequence

from .batch import iter_remove_background
from .compose import parse_color
from .errors import DeviceError, HubAccessError, RMBGError, either
from .files import check_writable_folder
from .interrupts import EXIT_INTERRUPTED, interrupt_guard, run_program
from .jobs import (OUTPUT_FORMATS, PNG_COMPRESSIONS, Failure, OutputFormat, Plan, Summary, plan_job, png_format,
                   run_tasks)
from .model import RMBGModel, load_model
from .options import count_problem
from .processing import MODEL_INPUT_SIZE
from .refine import Refinement, option_help, option_kinds
from .report import Reporter, print_message
from .version import __version__
from .weights import DEFAULT_SOURCE

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
Command = Callable[[argparse.Namespace], int]
STDIN = "-"


class UsageError(RMBGError):
    """Arguments that do not make sense together (exit code 2)."""


def positive_int(text: str) -> int:
    return _int_at_least(text, 1)


def non_negative_int(text: str) -> int:
    return _int_at_least(text, 0)


def _int_at_least(text: str, low: int) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    problem = count_problem(value, low)
    if problem is not None:
        raise argparse.ArgumentTypeError(problem)
    return value


def positive_float(text: str) -> float:
    return _float_checked(text, minimum=0.0, inclusive=False)


def non_negative_float(text: str) -> float:
    return _float_checked(text, minimum=0.0, inclusive=True)


def _float_checked(text: str, *, minimum: float, inclusive: bool) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not math.isfinite(value) or value < minimum or (value == minimum and not inclusive):
        bound = f"{minimum:g} or more" if inclusive else f"above {minimum:g}"
        raise argparse.ArgumentTypeError(f"must be {bound}, got {text}")
    return value


def input_size(text: str) -> tuple[int, int]:
    """``--input-size``: ``N`` (a square) or ``HxW``, as (height, width)."""
    parts = text.lower().split("x")
    if len(parts) > 2:
        raise argparse.ArgumentTypeError(f"{text!r} is not N or HxW (e.g. 1024 or 768x1024)")
    sizes = [_int_at_least(part, 1) for part in parts]
    return sizes[0], sizes[-1]


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    """--model / --device / --dtype, as ``load_model`` takes them."""
    group = parser.add_argument_group("model")
    group.add_argument("--model", default=DEFAULT_SOURCE, metavar="SRC",
                       help="Hugging Face repo id, checkpoint folder or file (default: %(default)s)")
    group.add_argument("--device", default="auto",
                       help="auto (CUDA, then MPS, then CPU), cpu, cuda, cuda:N or mps (default: auto)")
    group.add_argument("--dtype", default="auto",
                       help="auto (float16 on CUDA, else float32), float32, float16 or bfloat16 (default: auto)")
    group.add_argument("--input-size", type=input_size, default=MODEL_INPUT_SIZE, metavar="N|HxW",
                       help="network input size (default: 1024, the model card's, the only size that reproduces "
                            "its masks; smaller is faster and coarser)")
    group.add_argument("--no-accelerate", dest="accelerate", action="store_false", default=None,
                       help="run the plain PyTorch network, without the CPU accelerator (as RMBG_ACCELERATE=0)")


def add_edge_arguments(parser: argparse.ArgumentParser) -> None:
    """Mask refinement flags (named as the ``Refinement`` options everywhere) and --estimate-foreground."""
    group = parser.add_argument_group("edges (all off by default: the output is then the reference mask)")
    kinds = option_kinds()
    for name, text in option_help().items():
        flag = "--" + name.replace("_", "-")
        kind = kinds[name]
        if kind is bool:
            group.add_argument(flag, action="store_true", default=None, help=text)
        elif kind is tuple:  # "LOW,HIGH", read by Refinement.from_options like the pipeline's string keywords
            group.add_argument(flag, metavar="LOW,HIGH", help=text)
        else:
            group.add_argument(flag, type=kind, metavar="PX" if kind is int else "X", help=text)
    group.add_argument("--estimate-foreground", action="store_true",
                       help="estimate the foreground colours of soft edges (removes the old background's halo)")


def edge_options(args: argparse.Namespace) -> dict[str, Any]:
    """``refine`` and ``estimate_foreground`` for the core, from the parsed flags (validated here)."""
    return {"refine": Refinement.from_options(vars(args), ignore_unknown=True),
            "estimate_foreground": args.estimate_foreground}


def model_from(args: argparse.Namespace) -> RMBGModel:
    """The model the options name."""
    return load_model(args.model, device=args.device, dtype=args.dtype, accelerate=args.accelerate)


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
        from .ray.command import run_remove_on_ray
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
    from .export import ExportExistsError, export_model

    try:
        written = export_model(args.model, args.out_dir, overwrite=args.overwrite, revision=args.revision)
    except ExportExistsError as exc:
        raise UsageError(f"{exc.problem}; pass --overwrite to replace it") from None
    print_message(f"exported {args.model} to {args.out_dir} ({len(written)} files)", sys.stdout)
    return EXIT_OK


def add_serve_command(subparsers: Any) -> None:
    """``rmbg serve``: the HTTP service; its options live in :mod:`rmbg_core.serve.command`."""
    from .serve.command import add_serve_command as add_serve

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


if __name__ == "__main__":
    sys.exit(run_program(main))
