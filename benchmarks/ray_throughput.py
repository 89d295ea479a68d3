"""Throughput of ``rmbg remove`` on Ray Data against the local engine: images/s per worker count, and the
fixed cost Ray adds to every job.

Builds folders of photos as ``cli_throughput.py`` does (fixture crops, JPEG, 800-2000 px long side), starts
one local Ray cluster with this machine's cores (and GPUs), then runs the real command in this process
(``rmbg_core.cli.main.main``, PNG cutouts written to fresh folders) for each engine: local (the default, all
cores), Ray with 1 worker holding all cores, Ray with 2 workers holding half each, and, with CUDA, Ray
with one worker per GPU. Each runs a SMALL and a COUNT job, taking turns, so a busy machine slows them
alike. A job's time is ``fixed + images / rate``: the two sizes give both (``rate`` is the steady
images/s, ``fixed`` the start-up every job pays: for Ray, actors starting and loading the model, dataset
scheduling; model loading for the local engine). Cluster start-up (``ray.init``) is timed on its own.

On a machine where Ray may only use loopback (as where this project is developed), run it inside a
loopback-only network namespace:

    unshare -n sh -c 'ip link set lo up; exec python3 benchmarks/ray_throughput.py'
    python3 benchmarks/ray_throughput.py [--count 24] [--small 2] [--repeats 2] [--input-size 1024]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

import ray  # noqa: E402
import torch  # noqa: E402

from cli_throughput import FIXTURE, build_photos  # noqa: E402
from rmbg_core.cli.main import main as rmbg  # noqa: E402
from rmbg_core.ray.job import PACKAGE_DIR  # noqa: E402


def engines(cores: int, gpus: int) -> list[tuple[str, list[str], int]]:
    """(label, engine options, workers) of each row."""
    rows = [("local (this process)", ["--engine", "local"], 1),
            ("ray, 1 worker", ["--engine", "ray", "--num-workers", "1", "--cpus-per-worker", str(cores)], 1)]
    if cores >= 2:
        rows.append(("ray, 2 workers", ["--engine", "ray", "--num-workers", "2",
                                        "--cpus-per-worker", str(cores // 2)], 2))
    if gpus:
        rows.append((f"ray, {gpus} GPU worker(s)", ["--engine", "ray", "--num-workers", str(gpus),
                                                    "--gpus-per-worker", "1"], gpus))
    return rows


def run_job(folder: Path, out: Path, options: list[str], common: list[str]) -> float:
    """One ``rmbg remove`` job in this process; its wall time in seconds (every image must be written)."""
    stdout = io.StringIO()
    start = time.perf_counter()
    with contextlib.redirect_stdout(stdout):
        code = rmbg(["remove", str(folder), "-o", str(out), *common, *options, "--json"])
    seconds = time.perf_counter() - start
    summary = json.loads(stdout.getvalue())
    assert code == 0 and not summary["failed"], summary
    return seconds


def photo_folder(base: Path, count: int) -> Path:
    """``count`` photos in a folder of their own."""
    build_photos(base, count, 1)
    return base / "round0"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=24, help="photos in the large job (default: 24)")
    parser.add_argument("--small", type=int, default=2, help="photos in the small job (default: 2)")
    parser.add_argument("--repeats", type=int, default=2, help="runs of each job, taking turns (default: 2)")
    parser.add_argument("--input-size", default="1024", help="network input, as rmbg --input-size (default: 1024)")
    parser.add_argument("--batch-size", default="1", help="images per forward pass (default: 1)")
    args = parser.parse_args()

    cores, gpus = os.cpu_count() or 1, torch.cuda.device_count()
    model = str(FIXTURE) if (FIXTURE / "model.safetensors").is_file() else "briaai/RMBG-1.4"
    common = ["--model", model, "--input-size", args.input_size, "--batch-size", args.batch_size]
    rows = engines(cores, gpus)
    load_before = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    start = time.perf_counter()
    ray.init(address="local", num_cpus=cores, num_gpus=gpus, include_dashboard=False, log_to_driver=False,
             runtime_env={"py_modules": [str(PACKAGE_DIR)]})
    init_seconds = time.perf_counter() - start
    times: dict[tuple[str, int], list[float]] = {}
    try:
        with tempfile.TemporaryDirectory() as temp:
            folders = {args.small: photo_folder(Path(temp) / "small", args.small),
                       args.count: photo_folder(Path(temp) / "large", args.count)}
            for repeat in range(args.repeats):
                for label, options, _ in rows:
                    for count, folder in folders.items():
                        out = Path(temp) / f"out-{len(times)}-{repeat}"
                        times.setdefault((label, count), []).append(run_job(folder, out, options, common))
                        shutil.rmtree(out)
    finally:
        ray.shutdown()

    print(f"{args.small} and {args.count} JPEG photos (800-2000 px long side), PNG cutouts, input size "
          f"{args.input_size}, batch size {args.batch_size}, {cores} CPU cores, {gpus} GPUs, ray {ray.__version__}, "
          f"torch {torch.__version__}; best of {args.repeats} runs per job")
    if hasattr(os, "getloadavg"):
        print(f"1-minute load average {load_before:.1f} before, {os.getloadavg()[0]:.1f} after "
              "(other work on the machine slows every row)")
    print(f"Ray cluster start (ray.init, once per session, not per job): {init_seconds:.1f} s")
    print()
    print(f"| engine | workers | job of {args.small} (s) | job of {args.count} (s) | steady images/s "
          "| per worker | fixed cost per job (s) |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for label, _, workers in rows:
        small, large = min(times[label, args.small]), min(times[label, args.count])
        seconds_per_image = (large - small) / (args.count - args.small)
        rate = 1 / seconds_per_image if seconds_per_image > 0 else float("nan")
        fixed = small - args.small * seconds_per_image
        print(f"| {label} | {workers} | {small:.1f} | {large:.1f} | {rate:.2f} | {rate / workers:.2f} | {fixed:.1f} |")
    print()
    print("Expected on a cluster: a job of n images on W workers (each with its own cores or GPU) takes about "
          "fixed + n / (W x per-worker images/s), while storage keeps up.")


if __name__ == "__main__":
    main()
