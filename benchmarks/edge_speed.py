"""Cost of the edge tools next to the network, on one device: prints a Markdown table.

    python benchmarks/edge_speed.py [--device auto|cpu|cuda] [--repeats 5] [--threads N] [--fixtures DIR]

Times foreground estimation and each mask refinement on a 1920x1080 image, and one IS-Net forward
pass at 1024x1024 (random weights: the cost does not depend on them), prepared as ``load_model``
prepares it (the CPU accelerator included), in the dtype ``load_model`` picks for the device. Runs are interleaved so background load hits all rows alike; the table gives
the median and the best run, and each median as a share of the network's median. The 1080p input is
a fixture photo and its mask, resized, when ../shared is present, otherwise a synthetic soft disc.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from rmbg_core import Refinement, apply_refinement, estimate_foreground  # noqa: E402
from rmbg_core.model.inference import prepare_network  # noqa: E402
from rmbg_core.model.network import ISNet  # noqa: E402
from rmbg_core.model.runtime import dtype_name, resolve_device, resolve_dtype  # noqa: E402

SIZE = (1080, 1920)
REFINEMENTS = {
    "threshold=0.5": Refinement(threshold=0.5),
    "fill_holes": Refinement(fill_holes=True),
    "keep_largest": Refinement(keep_largest=True),
    "min_area=0.01": Refinement(min_area=0.01),
    "grow=5": Refinement(grow=5),
    "grow=-5": Refinement(grow=-5),
    "feather=4": Refinement(feather=4.0),
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None, help="CPU threads for torch (default: torch's)")
    parser.add_argument("--fixtures", type=Path, default=REPO.parent / "shared" / "fixtures" / "isnet-real")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    dtype = resolve_dtype("auto", device)
    image, alpha, source = test_image(args.fixtures, device)

    network = prepare_network(ISNet(), device=device, dtype=dtype)
    network_input = torch.rand(1, 3, 1024, 1024, device=device, dtype=dtype) - 0.5

    @torch.inference_mode()
    def forward() -> None:
        network(network_input.contiguous(memory_format=torch.channels_last))

    jobs: dict[str, Callable[[], object]] = {
        f"network forward 1024x1024 ({dtype_name(dtype)})": forward,
        "estimate_foreground 1920x1080": lambda: estimate_foreground(image, alpha),
    }
    for name, refinement in REFINEMENTS.items():
        jobs[f"refine {name} 1920x1080"] = lambda refinement=refinement: apply_refinement(alpha[None], refinement)

    times = {name: [] for name in jobs}
    for _ in range(args.repeats + 1):  # the first round warms up and is dropped
        for name, job in jobs.items():
            times[name].append(timed(job, device))
    network_median = statistics.median(next(iter(times.values()))[1:])

    load = ", ".join(f"{value:.1f}" for value in os.getloadavg()) if hasattr(os, "getloadavg") else "n/a"
    print(f"device: {describe(device)}; torch {torch.__version__}; threads {torch.get_num_threads()}; "
          f"load average {load}; input: {source}; {args.repeats} runs each, interleaved\n")
    print("| operation | median ms | best ms | share of network |")
    print("|---|---:|---:|---:|")
    for name, runs in times.items():
        runs = runs[1:]
        median = statistics.median(runs)
        print(f"| {name} | {1000 * median:.1f} | {1000 * min(runs):.1f} | {100 * median / network_median:.1f}% |")
    return 0


def timed(job: Callable[[], object], device: torch.device) -> float:
    synchronise(device)
    start = time.perf_counter()
    job()
    synchronise(device)
    return time.perf_counter() - start


def synchronise(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


def describe(device: torch.device) -> str:
    if device.type == "cuda":
        return f"{device} ({torch.cuda.get_device_name(device)})"
    return str(device)


def test_image(fixtures: Path, device: torch.device) -> tuple[torch.Tensor, torch.Tensor, str]:
    """A 1920x1080 uint8 photo and float mask on ``device``."""
    height, width = SIZE
    if (fixtures / "chelsea.png").is_file():
        photo = Image.open(fixtures / "chelsea.png").convert("RGB").resize((width, height), Image.BILINEAR)
        mask = Image.open(fixtures / "chelsea.mask.png").resize((width, height), Image.BILINEAR)
        image = torch.from_numpy(np.asarray(photo).copy())
        alpha = torch.from_numpy(np.asarray(mask).copy()).float() / 255
        source = "fixture photo chelsea and its mask, resized"
    else:
        generator = torch.Generator().manual_seed(0)
        image = (torch.rand(height, width, 3, generator=generator) * 255).to(torch.uint8)
        ys, xs = torch.meshgrid(torch.arange(height, dtype=torch.float32), torch.arange(width, dtype=torch.float32),
                                indexing="ij")
        alpha = ((400 - ((ys - height / 2) ** 2 + (xs - width / 2) ** 2).sqrt()) / 40).clamp(0, 1)
        source = "synthetic noise image, soft disc mask"
    return image.to(device), alpha.to(device), source


if __name__ == "__main__":
    sys.exit(main())
