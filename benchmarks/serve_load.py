"""Load on ``rmbg serve``: throughput, latency percentiles, status codes and server memory under concurrent clients.

Bounded client loops on 127.0.0.1 only: for each client count (``--clients 1,4,16``) that many threads send
``--requests`` PNG-cutout requests in all (multipart uploads of real photos: crops and resizes of the
fixture photos, JPEG, 800-2000 px) over keep-alive connections, and the table shows images/s, p50/p95/p99
latency and the status codes. Rows:

- ``remove_background`` in this process, one image after another (decode, predict, cutout, PNG): the
  baseline a service must not fall below;
- ``rmbg serve --max-batch 1`` (no cross-request batching) and ``rmbg serve --max-batch N``: batching
  must not lower throughput on the CPU and should raise it on a GPU;
- ``rembg s`` with the same IS-Net weights exported to ONNX (``-m dis_custom``), when an interpreter with
  rembg is given (``--rembg-python``, default: this one if it imports rembg), always at 1024x1024.

Then the batched server's RSS before and after ``--rss-requests`` more requests (4 clients): it should not
grow beyond noise. The model runs on ``--device`` (auto: CUDA if present) in ``--dtype`` (auto).

    python3 benchmarks/serve_load.py [--requests 64] [--clients 1,4,16] [--rss-requests 1000]
        [--max-batch 8] [--max-wait-ms 10] [--input-size 1024] [--weights DIR]
        [--rembg-python /path/to/venv/bin/python] [--onnx isnet.onnx]

Weights: the real-weights fixture by default. The ONNX file for rembg is exported with
``benchmark.export_onnx`` into a temp folder unless ``--onnx`` names one (with its ``.onnx.data`` beside it).
"""

from __future__ import annotations

import argparse
import http.client
import itertools
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlencode

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "benchmarks"), str(REPO / "tests")]

from rmbg_core.cpu_settings import apply_cpu_defaults  # noqa: E402

apply_cpu_defaults()  # as the rmbg command (the server) does, before torch is imported: a fair baseline

from cli_throughput import build_photos  # noqa: E402
from serve_process import HOST, ServeProcess, free_port, multipart  # noqa: E402

FIXTURE = REPO.parent / "shared" / "fixtures" / "isnet-real"
RSS_CLIENTS = 4


@dataclass
class Run:
    """One load: who served it, how many clients, each request's latency and status, the wall time."""

    target: str
    clients: int
    seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)
    statuses: list[str] = field(default_factory=list)

    def row(self) -> str:
        done = len(self.latencies)
        p50, p95, p99 = (np.percentile(self.latencies, q) if done else float("nan") for q in (50, 95, 99))
        codes = ", ".join(f"{code}: {count}" for code, count in sorted(_counts(self.statuses).items()))
        ok = self.statuses.count("200")
        return (f"| {self.target} | {self.clients} | {done} | {ok / self.seconds:.2f} | {p50:.2f} | {p95:.2f} | "
                f"{p99:.2f} | {codes} |")


def _counts(values: list[str]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for value in values:
        counts[value] = counts.get(value, 0) + 1
    return counts


def load(port: int, path: str, bodies: list[tuple[bytes, str]], clients: int, requests: int, target: str) -> Run:
    """``clients`` threads send ``requests`` POSTs in all, cycling over ``bodies``, keep-alive per thread."""
    run = Run(target, clients)
    numbers = itertools.count()
    lock = threading.Lock()

    def client() -> None:
        connection = http.client.HTTPConnection(HOST, port, timeout=600)
        while True:
            with lock:
                number = next(numbers)
            if number >= requests:
                break
            body, kind = bodies[number % len(bodies)]
            started = time.perf_counter()
            try:
                connection.request("POST", path, body=body, headers={"Content-Type": kind})
                response = connection.getresponse()
                response.read()
                status = str(response.status)
            except (OSError, http.client.HTTPException) as exc:
                status = type(exc).__name__
                connection.close()
                connection = http.client.HTTPConnection(HOST, port, timeout=600)
            with lock:
                run.latencies.append(time.perf_counter() - started)
                run.statuses.append(status)
        connection.close()

    threads = [threading.Thread(target=client) for _ in range(clients)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    run.seconds = time.perf_counter() - started
    return run


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def in_process(args: argparse.Namespace, photos: list[bytes], requests: int) -> Run:
    """``remove_background`` one image after another in this process, PNG-encoded as the service does."""
    from rmbg_core import load_model, remove_background
    from rmbg_core.formats import OUTPUT_FORMATS

    model = load_model(args.weights, device=args.device, dtype=args.dtype)
    remove_background(photos[0], model=model, input_size=args.input_size)  # warm-up
    run = Run("remove_background, one process", 1)
    started = time.perf_counter()
    for number in range(requests):
        begun = time.perf_counter()
        OUTPUT_FORMATS["png"].encode(remove_background(photos[number % len(photos)], model=model,
                                                       input_size=args.input_size))
        run.latencies.append(time.perf_counter() - begun)
        run.statuses.append("200")
    run.seconds = time.perf_counter() - started
    return run


def rmbg_runs(args: argparse.Namespace, photos: list[bytes], max_batch: int, rss: list[str]) -> list[Run]:
    """The load rows for ``rmbg serve --max-batch max_batch``; with ``rss``, the memory check too."""
    bodies = [multipart({"image": (f"photo{i}.jpg", data, "image/jpeg")}) for i, data in enumerate(photos)]
    server = ServeProcess(["--model", str(args.weights), "--device", args.device, "--dtype", args.dtype,
                           "--input-size", str(args.input_size), "--max-batch", str(max_batch), "--max-wait-ms",
                           str(args.max_wait_ms), "--queue", str(max(args.clients) + max_batch),
                           "--log-level", "warning"])
    runs = []
    try:
        server.wait_ready()
        target = f"rmbg serve --max-batch {max_batch}"
        load(server.port, "/v1/remove", bodies, max(args.clients), max(args.clients), target)  # warm-up
        runs = [load(server.port, "/v1/remove", bodies, clients, args.requests, target) for clients in args.clients]
        if rss is not None and args.rss_requests:
            before = rss_mb(server.process.pid)
            load(server.port, "/v1/remove", bodies, RSS_CLIENTS, args.rss_requests, target)
            after = rss_mb(server.process.pid)
            rss.append(f"{target}: RSS {before:.0f} MB after warm-up, {after:.0f} MB after {args.rss_requests} "
                       f"more requests ({RSS_CLIENTS} clients): {after - before:+.0f} MB")
    finally:
        server.stop()
    return runs


def rembg_runs(args: argparse.Namespace, photos: list[bytes], onnx: Path) -> list[Run]:
    """The same load on ``rembg s`` with ``dis_custom`` on the same weights (ONNX), 1024x1024 always."""
    port = free_port()
    log = tempfile.NamedTemporaryFile(prefix="rembg-s-", suffix=".log", delete=False)
    command = [args.rembg_python, "-c", "from rembg.cli import main; main()", "s", "--host", HOST, "--port",
               str(port), "--no-ui", "--log_level", "warning"]
    # BROWSER=true: rembg opens a browser on start; here that is the no-op command. rembg only loads a
    # model_path inside its model folder, which U2NET_HOME sets.
    environment = {**os.environ, "BROWSER": "true", "U2NET_HOME": str(onnx.parent)}
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=environment)
    extras = urlencode({"extras": json.dumps({"model_path": str(onnx)})})
    bodies = [multipart({"file": (f"photo{i}.jpg", data, "image/jpeg")}, {"model": "dis_custom"})
              for i, data in enumerate(photos)]
    try:
        deadline = time.monotonic() + 300
        while True:
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"rembg s did not start:\n{Path(log.name).read_text()}")
            try:
                connection = http.client.HTTPConnection(HOST, port, timeout=5)
                connection.request("GET", "/api")
                if connection.getresponse().status == 200:
                    break
            except OSError:
                time.sleep(0.2)
        target = "rembg s (dis_custom, ONNX)"
        path = f"/api/remove?{extras}"
        warm_up = load(port, path, bodies, max(args.clients), max(args.clients), target)  # loads the session
        if set(warm_up.statuses) != {"200"}:
            raise RuntimeError(f"rembg s answered {warm_up.statuses}:\n{Path(log.name).read_text()[-3000:]}")
        return [load(port, path, bodies, clients, args.requests, target) for clients in args.clients]
    finally:
        process.terminate()
        process.wait(60)


def rembg_available(python: str | None) -> bool:
    if not python:
        return False
    done = subprocess.run([python, "-c", "import rembg.cli, onnxruntime"], capture_output=True)
    return done.returncode == 0


def onnx_file(args: argparse.Namespace, folder: Path) -> Path:
    if args.onnx:
        return Path(args.onnx).resolve()
    from benchmark import export_onnx

    return export_onnx(args.weights / "model.safetensors", folder)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=64, help="requests per client count (default 64)")
    parser.add_argument("--clients", default="1,4,16", help="client counts (default 1,4,16)")
    parser.add_argument("--rss-requests", type=int, default=1000, help="requests between the RSS readings (0: skip)")
    parser.add_argument("--photos", type=int, default=16, help="distinct photos cycled through (default 16)")
    parser.add_argument("--max-batch", type=int, default=8)
    parser.add_argument("--max-wait-ms", type=float, default=10.0)
    parser.add_argument("--input-size", type=int, default=1024)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--dtype", default="auto")
    parser.add_argument("--weights", type=Path, default=FIXTURE)
    parser.add_argument("--rembg-python", default=None,
                        help="an interpreter that imports rembg (default: this one, if it does)")
    parser.add_argument("--onnx", help="the weights as ONNX for rembg (default: exported into a temp folder)")
    parser.add_argument("--skip-rembg", action="store_true")
    args = parser.parse_args()
    args.clients = [int(part) for part in args.clients.split(",")]
    args.weights = args.weights.resolve()
    args.rembg_python = args.rembg_python or sys.executable

    with tempfile.TemporaryDirectory() as folder:
        build_photos(Path(folder), args.photos, 1)
        photos = [path.read_bytes() for path in sorted(Path(folder).rglob("*.jpg"))]
        runs = [in_process(args, photos, args.requests)]
        rss: list[str] = []
        runs += rmbg_runs(args, photos, 1, None)
        runs += rmbg_runs(args, photos, args.max_batch, rss)
        notes = []
        if args.skip_rembg:
            notes.append("rembg: skipped (--skip-rembg)")
        elif not rembg_available(args.rembg_python):
            notes.append(f"rembg: not importable with {args.rembg_python} (--rembg-python names one that is)")
        else:
            runs += rembg_runs(args, photos, onnx_file(args, Path(folder)))
            if args.input_size != 1024:
                notes.append(f"rembg runs at 1024x1024, rmbg-kit at {args.input_size}: not a like-for-like row")

    print(f"{len(photos)} photos (JPEG, 800-2000 px), PNG cutouts, network input {args.input_size}, "
          f"device {args.device}, dtype {args.dtype}, --max-wait-ms {args.max_wait_ms:g}, cpus {os.cpu_count()}\n")
    print("| server | clients | requests | images/s | p50 s | p95 s | p99 s | status codes |")
    print("|---|---|---|---|---|---|---|---|")
    for run in runs:
        print(run.row())
    for line in rss + notes:
        print(f"\n{line}")


if __name__ == "__main__":
    main()
