"""Peak memory of Remove Background (RMBG) on video-like batches in a real ComfyUI server.

Each configuration runs in a fresh server (so its peak RSS, VmHWM, is its own): LoadImage ->
RepeatImageBatch(frames) -> Remove Background(batch_size) -> one frame saved. Prints a table: the
network's working memory follows batch_size; the frame count adds only the frames' own tensors
(input, cutout, mask: all of which are alive only at the end), not activations. RSS after the run is
what the server keeps while idle again (ComfyUI caches the run's outputs; the node gives its CPU
activation buffers back).

    COMFYUI_DIR=~/.cache/rmbg-kit/comfyui python3 benchmarks/comfyui_batch_memory.py \\
        --weights ../shared/fixtures/isnet-real/model.safetensors --image ../shared/fixtures/isnet-real/chelsea.png \\
        --runs 16x4,64x4
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from comfyui_server import ComfyUIServer, events, locate_comfyui  # noqa: E402

# float32 bytes per pixel of one frame held by the graph: the repeated input (3), the cutout (4), the
# mask (1) and the clamped mask copy made while compositing (1).
BYTES_PER_PIXEL = 4 * (3 + 4 + 1 + 1)


def prompt(image: str, frames: int, batch_size: int) -> dict:
    return {
        "1": {"class_type": "RMBGLoadModel", "inputs": {"model": "weights.safetensors", "device": "auto", "dtype": "auto"}},
        "2": {"class_type": "LoadImage", "inputs": {"image": image}},
        "3": {"class_type": "RepeatImageBatch", "inputs": {"image": ["2", 0], "amount": frames}},
        "4": {"class_type": "RMBGRemoveBackground", "inputs": {"rmbg_model": ["1", 0], "image": ["3", 0],
                                                               "batch_size": batch_size, "background": "alpha",
                                                               "background_color": "#FFFFFF"}},
        "5": {"class_type": "ImageFromBatch", "inputs": {"image": ["4", 0], "batch_index": frames - 1, "length": 1}},
        "6": {"class_type": "SaveImage", "inputs": {"images": ["5", 0], "filename_prefix": "last_frame"}},
    }


def measure(checkout: Path, python: Path, weights: Path, image: Path, frames: int, batch_size: int) -> dict:
    with tempfile.TemporaryDirectory() as base, \
            ComfyUIServer(checkout, python, Path(base), models={"weights.safetensors": weights}, inputs=[image]) as server:
        idle = server.peak_rss_mb()
        started = time.monotonic()
        entry = server.run(prompt(image.name, frames, batch_size), timeout=3600)
        seconds = time.monotonic() - started
        if entry["status"]["status_str"] != "success":
            raise RuntimeError(f"run failed: {events(entry)}")
        return {"idle": idle, "peak": server.peak_rss_mb(), "after": server.rss_mb(), "seconds": seconds}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weights", type=Path, required=True, help="an RMBG-1.4 checkpoint (.safetensors)")
    parser.add_argument("--image", type=Path, required=True, help="the frame to repeat")
    parser.add_argument("--runs", default="16x4,64x4", help="FRAMESxBATCH_SIZE,... (default %(default)s)")
    args = parser.parse_args(argv)
    found = locate_comfyui()
    if isinstance(found, str):
        parser.error(found)
    width, height = Image.open(args.image).size
    frame_mb = width * height * BYTES_PER_PIXEL / 2**20
    print(f"frame {width}x{height}: the graph holds {frame_mb:.1f} MiB of tensors per frame")
    print("| frames | batch_size | idle RSS MiB | peak RSS MiB | peak - idle MiB | frames' tensors MiB "
          "| RSS after the run MiB | seconds |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|")
    for run in args.runs.split(","):
        frames, batch_size = (int(part) for part in run.lower().split("x"))
        result = measure(*found, args.weights.resolve(), args.image.resolve(), frames, batch_size)
        print(f"| {frames} | {batch_size} | {result['idle']:.0f} | {result['peak']:.0f} | "
              f"{result['peak'] - result['idle']:.0f} | {frames * frame_mb:.0f} | {result['after']:.0f} "
              f"| {result['seconds']:.0f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
