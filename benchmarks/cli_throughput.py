"""Throughput of the ``rmbg remove`` batch path: images/s on a folder of photos, with and without I/O threads.

Builds a folder of COUNT photos in a temp dir (crops and resizes of the fixture photos, JPEG, 800-2000 px
on the long side, like product shots), then runs exactly what the CLI runs (``plan_job`` + ``run_tasks``:
decode, predict at 1024, cutout, PNG encode, atomic write) once with I/O in the main thread
(``--workers 0``) and once with I/O in worker threads. "model only" is the network alone on the same
images already decoded: the ceiling the threaded path approaches. A GPU block is added when CUDA is there.
The paths take turns over ROUNDS slices of the folder, so a busy shared machine slows them alike.

Weights: the real-weights fixture if present, else random weights (speed does not depend on their values).

    python3 benchmarks/cli_throughput.py [--count 100] [--rounds 10] [--workers 2] [--batch-size 1]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from rmbg_core import load_model  # noqa: E402
from rmbg_core.cli.jobs import Summary, plan_job, run_tasks  # noqa: E402
from rmbg_core.formats import OUTPUT_FORMATS  # noqa: E402
from rmbg_core.model.model import RMBGModel  # noqa: E402
from rmbg_core.model.weights import build_network  # noqa: E402

FIXTURE = REPO.parent / "shared" / "fixtures" / "isnet-real"
LONG_SIDES = (800, 1200, 1600, 2000)


def build_photos(folder: Path, count: int, rounds: int, long_sides: tuple[int, ...] = LONG_SIDES) -> list[Path]:
    """``count`` JPEG photos in ``rounds`` sub-folders: random crops of the fixture photos (or of smooth
    noise), resized to ``long_sides`` in turn; returns the sub-folders."""
    rng = np.random.default_rng(0)
    bases = [Image.open(path).convert("RGB") for path in sorted(FIXTURE.glob("*.png")) if ".mask" not in path.name]
    if not bases:
        noise = rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)
        bases = [Image.fromarray(noise).resize((640, 480), Image.BICUBIC)]
    for i in range(count):
        base = bases[i % len(bases)]
        width, height = base.size
        crop_w, crop_h = int(width * rng.uniform(0.6, 1.0)), int(height * rng.uniform(0.6, 1.0))
        left, top = int(rng.integers(0, width - crop_w + 1)), int(rng.integers(0, height - crop_h + 1))
        crop = base.crop((left, top, left + crop_w, top + crop_h))
        scale = long_sides[i % len(long_sides)] / max(crop.size)
        photo = crop.resize((round(crop.size[0] * scale), round(crop.size[1] * scale)), Image.BICUBIC)
        part = folder / f"round{i % rounds}"
        part.mkdir(parents=True, exist_ok=True)
        photo.save(part / f"photo{i:03d}.jpg", quality=92)
    return sorted(path for path in folder.iterdir() if path.is_dir())


def model_for(device: str) -> tuple[RMBGModel, str]:
    dtype = "float16" if device.startswith("cuda") else "float32"
    if (FIXTURE / "model.safetensors").is_file():
        return load_model(FIXTURE, device=device, dtype=dtype), "fixture weights"
    from rmbg_core.model.network import ISNet

    network = build_network(ISNet().state_dict(), torch.float32)
    return RMBGModel(network, device=device, dtype=dtype), "random weights"


def run_job(folder: Path, out: Path, model: RMBGModel, workers: int, batch_size: int) -> tuple[int, float]:
    """The CLI's batch path, end to end; returns (outputs written, seconds)."""
    plan = plan_job([str(folder)], out, suffix=".png")
    summary = Summary()
    run_tasks(plan.tasks, summary, model=model, output_format=OUTPUT_FORMATS["png"], batch_size=batch_size,
              workers=workers)
    summary.finish()
    assert not summary.failures, summary.failures
    return summary.written, summary.seconds


def model_only(folder: Path, model: RMBGModel, batch_size: int) -> tuple[int, float]:
    """The network alone (predict) on the same photos, decoded beforehand."""
    pixels = [torch.from_numpy(np.array(Image.open(path).convert("RGB"))) for path in sorted(folder.glob("*.jpg"))]
    start = time.perf_counter()
    for first in range(0, len(pixels), batch_size):
        model.predict(pixels[first:first + batch_size], batch_size=batch_size)
    if model.device.type == "cuda":
        torch.cuda.synchronize()
    return len(pixels), time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=100, help="photos in the folder (default: 100)")
    parser.add_argument("--rounds", type=int, default=10, help="slices the paths take turns over (default: 10)")
    parser.add_argument("--workers", type=int, default=2, help="I/O threads of the threaded row (default: 2)")
    parser.add_argument("--batch-size", type=int, default=1, help="images per forward pass (default: 1)")
    args = parser.parse_args()

    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    paths = [("rmbg remove, sequential I/O", 0), ("rmbg remove, threaded I/O", args.workers),
             ("model only (decoded in advance)", None)]
    rows = []
    load_before = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    with tempfile.TemporaryDirectory() as temp:
        parts = build_photos(Path(temp) / "photos", args.count, args.rounds)
        for device in devices:
            model, weights = model_for(device)
            model.predict(torch.zeros(1, 64, 64, 3, dtype=torch.uint8))  # warm-up (kernels, allocator)
            totals = {name: [0, 0.0] for name, _ in paths}
            for part in parts:
                for name, workers in paths:
                    if workers is None:
                        count, seconds = model_only(part, model, args.batch_size)
                    else:
                        out = Path(temp) / f"out-{device}-{workers}" / part.name
                        count, seconds = run_job(part, out, model, workers, args.batch_size)
                    totals[name][0] += count
                    totals[name][1] += seconds
            label = f"{device} {str(model.dtype).removeprefix('torch.')}"
            rows += [(label, name, "-" if workers is None else workers, *totals[name]) for name, workers in paths]

    print(f"{args.count} JPEG photos ({min(LONG_SIDES)}-{max(LONG_SIDES)} px long side), PNG cutouts, "
          f"batch size {args.batch_size}, {weights}, torch {torch.__version__}, {torch.get_num_threads()} CPU threads")
    if hasattr(os, "getloadavg"):
        print(f"{os.cpu_count()} CPU cores; 1-minute load average {load_before:.1f} before, "
              f"{os.getloadavg()[0]:.1f} after (other work on the machine slows every row)")
    print()
    print("| device | path | I/O workers | images | seconds | images/s |")
    print("|---|---|---|---|---|---|")
    for label, name, workers, count, seconds in rows:
        print(f"| {label} | {name} | {workers} | {count} | {seconds:.1f} | {count / seconds:.3f} |")


if __name__ == "__main__":
    main()
