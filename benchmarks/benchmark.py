"""Speed, memory and fidelity of rmbg-kit against onnxruntime and the plain eager path, as one table.

    python3 benchmarks/benchmark.py --quick            # a few minutes on 2 cores
    python3 benchmarks/benchmark.py                    # full: 3 sizes x batch 1/4/16, memory probes
    python3 benchmarks/benchmark.py --markdown out.md  # also write the tables as markdown

Every timed row runs in this one process, interleaved round-robin with the others of its group (same
input size and batch), at the same thread count, and reports medians. "Per image" is end to end: the
uint8 RGB batch in, float masks at input size out (decoding excluded, pre/post-processing included).
Rows:

- ``rmbg-kit <dtype>``: ``RMBGModel.predict`` (the library default on CPU is float32; bfloat16 is
  the CPU fast mode; CUDA rows when a GPU is present).
- ``onnxruntime``: our network exported with ``torch.onnx`` from the same weights, run by
  onnxruntime (CPU, and CUDA when onnxruntime-gpu is installed), with rmbg-kit's pre/post-processing
  around it, so the row differs from ours by the engine only.
- ``eager (model card)``: the model card's code path: ``F.interpolate`` on the full float image, the
  plain network as loaded (BatchNorm, NCHW, the CPU accelerator off: ``rmbg_core.model.network`` alone),
  float32; one image at a time, so on the CPU only at batch 1.

Every row reports its masks' difference from ``rmbg-kit float32`` on the same images (uint8 masks,
max and mean grey levels). Images are the real-weights fixture photos resized to each input size.
Peak memory is measured in fresh subprocesses (``--probe``), one per configuration.
onnxruntime/onnx/onnxscript are benchmark-only dependencies (``pip install rmbg-kit[bench]``).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import logging
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_WEIGHTS = REPO.parent / "shared" / "fixtures" / "isnet-real"
PHOTOS = ("astronaut", "chelsea", "coffee")
SIZES = {"1024x1024": (1024, 1024), "1920x1080": (1080, 1920), "6000x4000": (4000, 6000)}
SETTLE_SECONDS = 0.5  # pause before each timed call (not timed)
CPU_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_bf16", "avx512_fp16")


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="1024x1024 and 1920x1080 at batch 1 and 4, fewer "
                        "repeats (a few minutes on 2 cores)")
    parser.add_argument("--weights", default=os.fspath(DEFAULT_WEIGHTS),
                        help="checkpoint file or folder (default: the real-weights test fixture); it also "
                             "holds the photos used as inputs when they are there")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads for every row (default: torch's)")
    parser.add_argument("--sizes", default=None, help="comma-separated subset of " + ",".join(SIZES))
    parser.add_argument("--batches", default=None, help="comma-separated batch sizes (default 1,4,16; quick 1,4)")
    parser.add_argument("--repeats", type=int, default=None, help="timed rounds per group (default 5; quick 3)")
    parser.add_argument("--chunk", type=int, default=4, help="images in flight at once in every row (batch_size "
                        "of RMBGModel.predict; onnxruntime runs the same chunks): bounds memory, default 4")
    parser.add_argument("--skip-eager", action="store_true", help="leave out the slow eager (model card) rows")
    parser.add_argument("--skip-memory", action="store_true", help="leave out the peak-memory subprocesses")
    parser.add_argument("--no-cpu-defaults", action="store_true",
                        help="run without rmbg_core's OpenMP/huge-page defaults (RMBG_NO_CPU_DEFAULTS=1)")
    parser.add_argument("--markdown", default=None, help="also write the result tables to this file")
    parser.add_argument("--probe", default=None, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


ARGS = parse_args()
sys.path.insert(0, os.fspath(REPO))
from rmbg_core.cpu.settings import apply_cpu_defaults  # noqa: E402

if not ARGS.no_cpu_defaults:
    apply_cpu_defaults()  # as the rmbg command does; only works before torch is imported
import rmbg_core  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from PIL import Image  # noqa: E402

from rmbg_core.model.images import mask_to_uint8  # noqa: E402
from rmbg_core.model.processing import postprocess, preprocess  # noqa: E402
from rmbg_core.model.weights import build_network, locate_checkpoint, read_state_dict  # noqa: E402


# ---- inputs ---------------------------------------------------------------------------------------------

def photo_folder(weights: str) -> Path | None:
    folder = Path(weights) if Path(weights).is_dir() else Path(weights).parent
    return folder if all((folder / f"{name}.png").is_file() for name in PHOTOS) else None


def make_batch(size: tuple[int, int], batch: int, folder: Path | None) -> torch.Tensor:
    """(B, H, W, 3) uint8: the fixture photos (cycled) resized to ``size``; smooth noise without them."""
    height, width = size
    frames = []
    for index in range(batch):
        if folder is not None:
            photo = Image.open(folder / f"{PHOTOS[index % len(PHOTOS)]}.png").convert("RGB")
            frames.append(np.asarray(photo.resize((width, height), Image.BICUBIC)))
        else:
            generator = np.random.default_rng(index)
            small = generator.integers(0, 256, (height // 64 + 2, width // 64 + 2, 3), dtype=np.uint8)
            frames.append(np.asarray(Image.fromarray(small).resize((width, height), Image.BICUBIC)))
    return torch.from_numpy(np.stack(frames))


# ---- the rows -------------------------------------------------------------------------------------------

def model_card_predict(network: torch.nn.Module, images: torch.Tensor) -> torch.Tensor:
    """The model card's path: full-resolution float NCHW tensor, F.interpolate, the plain network
    (``build_network`` gives it without the accelerator)."""
    with torch.inference_mode():
        masks = []
        for image in images:
            x = image.permute(2, 0, 1)[None].to(torch.float32)
            x = F.interpolate(x, size=[1024, 1024], mode="bilinear") / 255.0 - 0.5
            result = network(x)
            result = F.interpolate(result, size=tuple(image.shape[:2]), mode="bilinear")[0, 0]
            low, high = result.min(), result.max()
            masks.append((result - low) / (high - low))
        return torch.stack(masks)


def export_onnx(checkpoint: Path, folder: Path) -> Path:
    """Export the float32 network (unfolded, as loaded) with a dynamic batch axis."""
    path = folder / "isnet.onnx"
    network = build_network(read_state_dict(checkpoint))
    example = torch.rand(2, 3, 1024, 1024) - 0.5
    batch = torch.export.Dim("batch", min=1, max=64)
    logging.getLogger("torch.onnx").setLevel(logging.ERROR)  # e.g. "torchvision is not installed"
    with contextlib.redirect_stdout(io.StringIO()):  # the exporter narrates its steps
        torch.onnx.export(network, (example,), os.fspath(path), dynamo=True, input_names=["image"],
                          output_names=["mask"], dynamic_shapes=({0: batch},), verbose=False)
    return path


def onnxruntime_rows(onnx_path: Path, threads: int) -> list[tuple[str, object]]:
    import onnxruntime as ort

    rows = []
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    cpu = ort.InferenceSession(os.fspath(onnx_path), options, providers=["CPUExecutionProvider"])
    rows.append(("onnxruntime cpu float32", ort_predict(cpu, None)))
    if torch.cuda.is_available() and "CUDAExecutionProvider" in ort.get_available_providers():
        gpu = ort.InferenceSession(os.fspath(onnx_path), providers=["CUDAExecutionProvider"])
        rows.append(("onnxruntime cuda float32", ort_predict(gpu, "cuda")))
    return rows


def ort_predict(session, device: str | None):
    """onnxruntime on our network, with rmbg-kit's pre/post-processing (on ``device`` if given), in
    chunks of at most ``--chunk`` images like the other rows."""
    def predict(images: torch.Tensor) -> torch.Tensor:
        masks = torch.empty(images.shape[:3], dtype=torch.float32)
        with torch.inference_mode():
            for start in range(0, len(images), ARGS.chunk):
                chunk = images[start:start + ARGS.chunk]
                x = preprocess(chunk.to(device) if device else chunk)
                result = torch.from_numpy(session.run(None, {"image": x.contiguous().cpu().numpy()})[0])
                masks[start:start + len(chunk)] = postprocess(result.to(x.device), tuple(images.shape[1:3])).cpu()
        return masks
    return predict


def build_rows(args, checkpoint: Path, tmp: Path) -> list[tuple[str, object]]:
    """(label, predict) for every configuration this machine can run; the first is the reference."""
    rows = []
    for dtype in ("float32", "bfloat16"):
        model = rmbg_core.load_model(checkpoint, device="cpu", dtype=dtype)
        rows.append((f"rmbg-kit cpu {dtype}" + (" (fast mode)" if dtype == "bfloat16" else ""), _batched(model)))
    try:
        onnx_path = export_onnx(checkpoint, tmp)
    except Exception as exc:  # the exporter's failures are many and version-specific; the table goes on without it
        print(f"- onnxruntime rows left out: torch.onnx.export failed ({type(exc).__name__}: {exc})"[:400], flush=True)
    else:
        rows.extend(onnxruntime_rows(onnx_path, torch.get_num_threads()))
    if not args.skip_eager:
        eager = build_network(read_state_dict(checkpoint))
        rows.append(("eager (model card) cpu float32", lambda images: model_card_predict(eager, images)))
    if torch.cuda.is_available():
        for dtype in ("float32", "float16", "bfloat16"):
            model = rmbg_core.load_model(checkpoint, device="cuda", dtype=dtype)
            rows.append((f"rmbg-kit cuda {dtype}", _cuda_timed(_batched(model))))
        eager_gpu = build_network(read_state_dict(checkpoint)).cuda()
        rows.append(("eager (model card) cuda float32",
                     _cuda_timed(lambda images: model_card_predict(eager_gpu, images.cuda()).cpu())))
    return rows


def _batched(model):
    return lambda images: model.predict(images, batch_size=min(len(images), ARGS.chunk))


def _cuda_timed(predict):
    def run(images):
        torch.cuda.synchronize()
        result = predict(images)
        torch.cuda.synchronize()
        return result
    return run


# ---- timing ---------------------------------------------------------------------------------------------

def time_group(rows, images: torch.Tensor, repeats: int) -> list[dict]:
    """Run every row on ``images`` round-robin ``repeats`` times (after one warm-up each); medians."""
    reference = None
    results = []
    for label, predict in rows:
        cuda = " cuda " in label
        if cuda:
            torch.cuda.reset_peak_memory_stats()
        mask8 = mask_to_uint8(predict(images))  # warm-up, and the masks compared below
        peak_cuda = torch.cuda.max_memory_allocated() / 2**20 if cuda else None
        if reference is None:
            reference = mask8
        largest, total = 0, 0.0
        for ours, theirs in zip(mask8, reference):  # one image at a time: 6000x4000 batches are large
            diff = (ours.to(torch.int16) - theirs.to(torch.int16)).abs_()
            largest, total = max(largest, int(diff.max())), total + float(diff.sum(dtype=torch.float64))
        results.append({"label": label, "times": [], "max_diff": largest, "mean_diff": total / reference.numel(),
                        "cuda_mb": peak_cuda})
        del mask8
    for _ in range(repeats):
        for result, (_, predict) in zip(results, rows):
            # The row before may leave threads spinning (onnxruntime's spin by default): let them go
            # back to sleep, so they do not take the cores from this row's first parallel regions.
            time.sleep(SETTLE_SECONDS)
            start = time.perf_counter()
            predict(images)
            result["times"].append(time.perf_counter() - start)
    for result in results:
        result["seconds"] = statistics.median(result["times"])
    return results


# ---- memory probes (each in a fresh process) --------------------------------------------------------------

def rss_mb() -> dict[str, float]:
    values = {}
    with open("/proc/self/status") as status:
        for line in status:
            key, _, rest = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                values[key] = int(rest.split()[0]) / 1024
    return values


def probe(spec: dict) -> dict:
    """Peak RSS of one configuration, by stage (this process was started for it alone)."""
    torch.set_num_threads(spec["threads"])
    stages = {"import torch": rss_mb()["VmHWM"]}
    kind = spec["kind"]
    if kind == "model card":
        network = build_network(read_state_dict(spec["checkpoint"]))
    else:
        model = rmbg_core.load_model(spec["checkpoint"], device="cpu", dtype=spec["dtype"])
    stages["weights loaded"] = rss_mb()["VmHWM"]
    if spec["input"] == "photo":
        from rmbg_core.model.images import read_image

        picture = read_image(spec["photo"])
        stages["photo decoded"] = rss_mb()["VmHWM"]
        if kind == "model card":
            mask = model_card_predict(network, picture.pixels[None])[0]
            (mask * 255).numpy().astype(np.uint8)
        else:
            rmbg_core.remove_background(picture.pixels, model=model, return_mask=True)
        stages["mask done"] = rss_mb()["VmHWM"]
        return {"stages": stages, "peak": stages["mask done"]}
    frames = make_batch((1080, 1920), 3, photo_folder(spec["checkpoint"]))
    video = frames[torch.arange(spec["frames"]) % 3].contiguous()
    stages["frames in memory"] = rss_mb()["VmHWM"]
    masks = model.predict(video, batch_size=spec["batch_size"])
    peak = rss_mb()["VmHWM"]
    data_mb = (video.numel() * video.element_size() + masks.numel() * masks.element_size()) / 2**20
    return {"stages": stages, "peak": peak, "data_mb": data_mb, "working": peak - data_mb}


def run_probe(spec: dict) -> dict:
    env = dict(os.environ)
    result = subprocess.run([sys.executable, __file__, "--probe", json.dumps(spec)]
                            + (["--no-cpu-defaults"] if ARGS.no_cpu_defaults else []),
                            capture_output=True, text=True, env=env, timeout=3600)
    if result.returncode:
        raise RuntimeError(f"memory probe {spec} failed:\n{result.stderr[-2000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def memory_section(args, checkpoint: Path, tmp: Path) -> list[str]:
    photo = tmp / "photo-6000x4000.jpg"
    frame = make_batch((4000, 6000), 1, photo_folder(args.weights))[0].numpy()
    Image.fromarray(frame).save(photo, quality=92)
    threads = torch.get_num_threads()
    lines = ["| configuration | input | peak RSS (MB) | by stage (peak so far, MB) |", "|---|---|---:|---|"]
    for label, kind, dtype in (("rmbg-kit float32", "ours", "float32"), ("rmbg-kit bfloat16", "ours", "bfloat16"),
                               ("model card code (eager)", "model card", "float32")):
        if kind == "model card" and args.skip_eager:
            continue
        result = run_probe({"kind": kind, "dtype": dtype, "input": "photo", "photo": os.fspath(photo),
                            "checkpoint": os.fspath(checkpoint), "threads": threads})
        stages = ", ".join(f"{name} {value:.0f}" for name, value in result["stages"].items())
        lines.append(f"| {label} | 6000x4000 JPEG, mask | {result['peak']:.0f} | {stages} |")
        print(lines[-1], flush=True)
    lines += ["", "| configuration | frames (1920x1080, batch_size=4) | peak RSS (MB) | input + output tensors (MB) "
              "| peak minus them (MB) |", "|---|---:|---:|---:|---:|"]
    for count in (16, 64):
        result = run_probe({"kind": "ours", "dtype": "float32", "input": "frames", "frames": count, "batch_size": 4,
                            "checkpoint": os.fspath(checkpoint), "threads": threads})
        lines.append(f"| rmbg-kit float32 | {count} | {result['peak']:.0f} | {result['data_mb']:.0f} "
                     f"| {result['working']:.0f} |")
        print(lines[-1], flush=True)
    return lines


# ---- report ---------------------------------------------------------------------------------------------

def machine_lines() -> list[str]:
    model, flags = platform.processor() or "?", set()
    try:
        with open("/proc/cpuinfo") as info:
            for line in info:
                if line.startswith("model name") and model in ("?", "x86_64", ""):
                    model = line.split(":", 1)[1].strip()
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    import onnxruntime

    load = os.getloadavg() if hasattr(os, "getloadavg") else ("?",)
    lines = [
        f"- CPU: {model}, {os.cpu_count()} logical cores; relevant flags: "
        + ", ".join(f"{flag} {'yes' if flag in flags else 'no'}" for flag in CPU_FLAGS),
        f"- threads: {torch.get_num_threads()} (torch and onnxruntime alike)",
        f"- torch {torch.__version__}, onnxruntime {onnxruntime.__version__}, Python {platform.python_version()}",
        f"- GOMP_SPINCOUNT={os.environ.get('GOMP_SPINCOUNT', 'unset')}, "
        f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', 'unset')}, "
        f"THP_MEM_ALLOC_ENABLE={os.environ.get('THP_MEM_ALLOC_ENABLE', 'unset')}",
        f"- GPU: {torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'no CUDA device'}",
        f"- load average at start: {' '.join(f'{value:.2f}' for value in load)}",
    ]
    return lines


def group_lines(size_name: str, batch: int, results: list[dict]) -> list[str]:
    by_label = {result["label"]: result for result in results}
    baselines = {"cpu": by_label.get("onnxruntime cpu float32"),
                 "cuda": by_label.get("onnxruntime cuda float32") or by_label.get("eager (model card) cuda float32")}
    lines = []
    for result in results:
        per_image = result["seconds"] / batch
        device = "cuda" if " cuda " in result["label"] else "cpu"
        baseline = baselines[device]
        ratio = f"{result['seconds'] / baseline['seconds']:.2f}" if baseline else "-"
        cuda_mb = f"{result['cuda_mb']:.0f}" if result["cuda_mb"] is not None else "-"
        best = min(result["times"]) / batch
        lines.append(f"| {size_name} | {batch} | {result['label']} | {per_image * 1000:.0f} | {best * 1000:.0f} "
                     f"| {batch / result['seconds']:.2f} "
                     f"| {ratio} | {result['max_diff']} | {result['mean_diff']:.3f} | {cuda_mb} |")
    return lines


TABLE_HEAD = ["| input | batch | configuration | ms / image (median) | ms / image (best) | images / s "
              "| time vs onnxruntime | max diff | mean diff | CUDA max allocated (MB) |",
              "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|"]


def main() -> None:
    args = ARGS
    if args.probe:
        print(json.dumps(probe(json.loads(args.probe))))
        return
    if args.threads:
        torch.set_num_threads(args.threads)
    sizes = args.sizes.split(",") if args.sizes else (["1024x1024", "1920x1080"] if args.quick else list(SIZES))
    batches = [int(b) for b in args.batches.split(",")] if args.batches else ([1, 4] if args.quick else [1, 4, 16])
    repeats = args.repeats or (3 if args.quick else 5)
    checkpoint = locate_checkpoint(args.weights)
    folder = photo_folder(args.weights)
    report = ["## Machine", "", *machine_lines(), ""]
    print("\n".join(report), flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        rows = build_rows(args, checkpoint, Path(tmp))
        report += ["## Speed and fidelity", "", *TABLE_HEAD]
        print("\n".join(TABLE_HEAD), flush=True)
        for size_name in sizes:
            for batch in batches:
                images = make_batch(SIZES[size_name], batch, folder)
                # The eager path works one image at a time; on the CPU that is too slow to repeat at every batch.
                group_rows = rows if batch == 1 else [row for row in rows if not row[0].startswith("eager (model card) cpu")]
                lines = group_lines(size_name, batch, time_group(group_rows, images, repeats if batch < 16 else 2))
                report += lines
                print("\n".join(lines), flush=True)
        if not args.skip_memory:
            report += ["", "## Peak memory (fresh process per row)", ""]
            print(report[-1], flush=True)
            report += memory_section(args, checkpoint, Path(tmp))
    report += ["", f"- load average at end: {' '.join(f'{v:.2f}' for v in os.getloadavg())}"]
    print(report[-1])
    if args.markdown:
        Path(args.markdown).write_text("\n".join(report) + "\n")


if __name__ == "__main__":
    main()
