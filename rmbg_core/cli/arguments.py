"""The command line's shared arguments: value types (counts, numbers, sizes), the model and edge option
groups every subcommand spells the same way, usage errors and exit codes."""

from __future__ import annotations

import argparse
import math
from typing import Any

from ..edges.refine import Refinement, option_help, option_kinds
from ..errors import RMBGError
from ..model.model import RMBGModel, load_model
from ..model.processing import MODEL_INPUT_SIZE
from ..model.weights import DEFAULT_SOURCE
from ..options import count_problem

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
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
