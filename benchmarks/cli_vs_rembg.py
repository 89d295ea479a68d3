"""Whole commands, model loading included: ``rmbg remove`` against rembg's ``rembg p`` on the same weights.

rembg's ``dis_custom`` session runs our IS-Net exported to ONNX (``benchmark.py``'s ``export_onnx``; made
here once if ``--onnx`` is not given) with RMBG-1.4's normalisation at 1024x1024. Both commands turn the
same photos into PNG cutouts, each run a fresh process writing into a fresh folder: one photo, and a folder
of ``--count`` JPEG photos of 1200-1600 px (``cli_throughput.build_photos``: crops and resizes of the
fixture photos, deterministic). The commands alternate within every run (their order rotating), so a busy
machine slows them alike; the table gives the median wall time and peak RSS (the largest process of the
command's tree, from ``wait4``) and the ratio to rembg, then how far the masks (the cutouts' alpha) are
from rembg's and, for bfloat16, from float32's.

Installs nothing: rembg must be importable by ``--rembg-python`` (default: this interpreter), e.g.
``python -m venv ~/rembg && ~/rembg/bin/pip install "rembg[cpu,cli]"``.

    python3 benchmarks/cli_vs_rembg.py --rembg-python ~/rembg/bin/python [--runs 5] [--count 20]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

BENCHMARKS = Path(__file__).resolve().parent
REPO = BENCHMARKS.parent
sys.path.insert(0, os.fspath(BENCHMARKS))

from cli_throughput import FIXTURE, build_photos  # noqa: E402

LONG_SIDES = (1200, 1400, 1600)
INSTALL_HINT = 'rembg is not importable by {python}; install it there: {python} -m pip install "rembg[cpu,cli]"'


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rembg-python", default=sys.executable, help="interpreter that has rembg[cpu,cli]")
    parser.add_argument("--model", default=os.fspath(FIXTURE), help="rmbg checkpoint (default: the fixture)")
    parser.add_argument("--onnx", default=None, help="the same weights as ONNX (default: exported once, cached)")
    parser.add_argument("--runs", type=int, default=5, help="runs of every command (medians are reported)")
    parser.add_argument("--count", type=int, default=20, help="photos in the folder")
    parser.add_argument("--bfloat16", choices=("auto", "yes", "no"), default="auto",
                        help="time the bfloat16 fast mode too (auto: only on CPUs with native bfloat16)")
    parser.add_argument("--keep", action="store_true", help="keep the photos and outputs (default: deleted)")
    return parser.parse_args(argv)


def rembg_available(python: str) -> bool:
    """True when ``python`` can import rembg's command line and onnxruntime."""
    try:
        return subprocess.run([python, "-c", "import rembg.cli, onnxruntime"], capture_output=True).returncode == 0
    except OSError:  # no such interpreter
        return False


def export_onnx(model: str, folder: Path) -> Path:
    """``benchmark.py``'s export in a child process (that module reads its own command line on import)."""
    path = folder / "isnet.onnx"
    if not path.exists():
        folder.mkdir(parents=True, exist_ok=True)
        code = ("import sys; from pathlib import Path; sys.argv = sys.argv[:1]; sys.path.insert(0, sys.argv[0]); "
                "from benchmark import export_onnx; "
                f"export_onnx(Path({model!r}), Path({os.fspath(folder)!r}))")
        subprocess.run([sys.executable, "-c", code, os.fspath(BENCHMARKS)], check=True, cwd=REPO)
    return path


def rembg_home(onnx: Path, home: Path) -> Path:
    """rembg loads custom models only from under its home folder: link the ONNX (and its external data)
    there; returns the model path to give it."""
    home.mkdir(parents=True, exist_ok=True)
    for source in (onnx, onnx.with_name(onnx.name + ".data")):
        if source.exists() and not (home / source.name).exists():
            (home / source.name).symlink_to(source.resolve())
    return home / onnx.name


def run_measured(command: list[str], env: dict[str, str]) -> tuple[float, int]:
    """Runs ``command``; returns (wall seconds, peak RSS in bytes of its largest process)."""
    start = time.perf_counter()
    process = subprocess.Popen(command, env=env, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    stderr = process.stderr.read()
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - start
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode:
        raise SystemExit(f"{' '.join(command)} failed ({process.returncode}):\n{stderr.decode(errors='replace')}")
    return seconds, usage.ru_maxrss * 1024


def alphas(folder: Path) -> dict[str, np.ndarray]:
    """The alpha channel of every PNG cutout in ``folder``, by file stem."""
    return {path.stem: np.asarray(Image.open(path).getchannel("A"), dtype=np.int16)
            for path in sorted(folder.glob("*.png"))}


def agreement(ours: Path, theirs: Path) -> str:
    """Mean and largest per-photo distance of two folders' masks, in grey levels, and the share within 3."""
    a, b = alphas(ours), alphas(theirs)
    if not a or a.keys() != b.keys():
        return f"outputs differ: {sorted(a)} vs {sorted(b)}"
    diffs = [np.abs(a[name] - b[name]) for name in a]
    within = np.mean([float((diff <= 3).mean()) for diff in diffs])
    p99 = max(float(np.percentile(diff, 99)) for diff in diffs)
    return (f"mean {np.mean([diff.mean() for diff in diffs]):.2f}, 99th percentile {p99:.0f}, "
            f"max {max(int(diff.max()) for diff in diffs)} grey levels; {within:.1%} of pixels within 3")


def native_bfloat16() -> bool:
    """True on CPUs with bfloat16 instructions (AVX-512 BF16 or AMX), which the fast mode is made for."""
    flags = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    return "avx512_bf16" in flags or "amx_bf16" in flags


def main(argv: list[str] | None = None) -> int:
    """Builds the photos, runs the commands alternating and prints the table; 2 when rembg is missing."""
    args = parse_args(argv)
    if not rembg_available(args.rembg_python):
        print(INSTALL_HINT.format(python=args.rembg_python), file=sys.stderr)
        return 2
    work = Path(tempfile.mkdtemp(prefix="rmbg-vs-rembg-"))
    cache = Path(tempfile.gettempdir()) / "rmbg-kit-isnet-onnx"
    onnx = Path(args.onnx) if args.onnx else export_onnx(args.model, cache)
    env = {**os.environ, "U2NET_HOME": os.fspath(work / "rembg-home")}
    model_path = rembg_home(onnx, work / "rembg-home")
    folder = build_photos(work / "folder", args.count, 1, LONG_SIDES)[0]
    single = work / "single"
    single.mkdir()
    (single / "photo.jpg").symlink_to(sorted(folder.glob("*.jpg"))[0])
    rmbg = [sys.executable, "-m", "rmbg_core", "remove", "--model", args.model, "--device", "cpu"]
    rembg = [args.rembg_python, "-c", "import sys; from rembg.cli import main; sys.argv[0] = 'rembg'; main()", "p",
             "-m", "dis_custom", "-x", json.dumps({"model_path": os.fspath(model_path)})]
    commands = {  # slug: (label, command for (input, output folder))
        "rembg": ("rembg p (onnxruntime)", lambda src, out: [*rembg, src, out]),
        "float32": ("rmbg remove float32", lambda src, out: [*rmbg, "--dtype", "float32", src, "-o", out]),
    }
    bfloat16 = args.bfloat16 == "yes" or (args.bfloat16 == "auto" and native_bfloat16())
    if bfloat16:
        commands["bfloat16"] = ("rmbg remove bfloat16",
                                lambda src, out: [*rmbg, "--dtype", "bfloat16", src, "-o", out])
    jobs = {"one": single, "folder": folder}
    results = {(slug, job): [] for slug in commands for job in jobs}
    slugs = list(commands)
    for run in range(args.runs):
        order = slugs[run % len(slugs):] + slugs[:run % len(slugs)]
        for job, source in jobs.items():
            for slug in order:
                command = commands[slug][1](os.fspath(source), os.fspath(work / "out" / f"{slug}-{job}-{run}"))
                results[slug, job].append(run_measured(command, env))
        print(f"run {run + 1}/{args.runs} done", file=sys.stderr)
    native = "yes" if native_bfloat16() else "no (the fast mode is not for this CPU)"
    print(f"{os.cpu_count()} CPUs; native bfloat16: {native}; "
          f"one photo and {args.count} photos of {min(LONG_SIDES)}-{max(LONG_SIDES)} px; medians of {args.runs} runs\n")
    print("| command | one photo: wall | peak RSS | folder: wall | peak RSS |")
    print("|---|---:|---:|---:|---:|")
    base = {job: statistics.median(s for s, _ in results["rembg", job]) for job in jobs}
    for slug, (label, _) in commands.items():
        cells = []
        for job in jobs:
            wall = statistics.median(s for s, _ in results[slug, job])
            rss = statistics.median(r for _, r in results[slug, job]) / 2 ** 30
            cells += [f"{wall:.2f} s ({wall / base[job]:.2f}x)", f"{rss:.2f} GiB"]
        print(f"| {label} | " + " | ".join(cells) + " |")
    last = {slug: work / "out" / f"{slug}-folder-{args.runs - 1}" for slug in commands}
    print(f"\nmasks, rmbg float32 vs rembg: {agreement(last['float32'], last['rembg'])}")
    if bfloat16:
        print(f"masks, rmbg bfloat16 vs float32: {agreement(last['bfloat16'], last['float32'])}")
    if args.keep:
        print(f"(photos and outputs kept in {work})")
    else:
        shutil.rmtree(work)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
