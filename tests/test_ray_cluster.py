"""``rmbg remove --engine ray`` and the predictor on real Ray clusters on this machine: a separately started
head (``ray start``, through ``--address``) and an in-process ``ray.init(num_cpus=2)``. Outputs must be the
local CLI's, byte for byte. Small on purpose: a few images at a 64x64 network input.

Ray binds the machine's non-loopback address, which tests may not use; so these run only inside a
loopback-only network namespace (``./run.sh tests`` makes one where it can: ``unshare -n``).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from PIL import Image

ray = pytest.importorskip("ray", reason="the [ray] extra is not installed (pip install 'rmbg-kit[ray]')")

from rmbg_core import remove_background  # noqa: E402
from rmbg_core.cli.main import main  # noqa: E402
from rmbg_core.cli.jobs import Task  # noqa: E402
from rmbg_core.formats import OUTPUT_FORMATS  # noqa: E402
from rmbg_core.ray import RemoveBackground  # noqa: E402
from rmbg_core.ray.job import PACKAGE_DIR, Cluster, build_dataset  # noqa: E402

from conftest import REPO, SMALL_INPUT  # noqa: E402

LOOPBACK_ONLY = [name for _, name in socket.if_nameindex()] == ["lo"]
pytestmark = pytest.mark.skipif(
    not LOOPBACK_ONLY, reason="Ray binds this machine's non-loopback address, which tests may not use: run them in "
                              "a loopback-only network namespace (./run.sh tests does: unshare -n, lo up)")
SMALL = ("--input-size", "64", "--device", "cpu", "--dtype", "float32")
TIMEOUT = 300


@pytest.fixture(scope="module")
def photos(tmp_path_factory, fixture_dir) -> Path:
    """Two fixture photos (one in a subfolder), a truncated PNG and an empty file."""
    folder = tmp_path_factory.mktemp("photos")
    (folder / "sub").mkdir()
    shutil.copy(fixture_dir / "chelsea.png", folder / "chelsea.png")
    shutil.copy(fixture_dir / "coffee.png", folder / "sub" / "coffee.png")
    (folder / "corrupt.png").write_bytes((fixture_dir / "chelsea.png").read_bytes()[:600])
    (folder / "empty.jpg").write_bytes(b"")
    return folder


@pytest.fixture(scope="module")
def local_outputs(photos, tmp_path_factory, fixture_dir) -> Path:
    """What the local CLI writes for ``photos`` (recursive)."""
    out = tmp_path_factory.mktemp("local")
    assert main(["remove", str(photos), "-o", str(out), "-r", "--model", str(fixture_dir), *SMALL]) == 1
    return out


def files(folder: Path) -> dict[str, bytes]:
    return {str(path.relative_to(folder)): path.read_bytes() for path in sorted(folder.rglob("*")) if path.is_file()}


def summary_of(capsys) -> dict:
    return json.loads(capsys.readouterr().out)


def failed_inputs(summary: dict) -> list[str]:
    return sorted(Path(failure["input"]).name for failure in summary["failed"])


def test_a_job_through_address_on_a_separately_started_head(photos, local_outputs, fixture_dir, tmp_path):
    """``ray start --head`` on 127.0.0.1 (started and stopped here, by its PID), the CLI as its own process.

    The head keeps its files in a temp folder of its own, so nothing but ``--address`` leads the CLI to it
    (``ray.init()`` alone would start a cluster of its own); its drivers' logs there show who joined.
    """
    port = free_port()
    environment = dict(os.environ, RAY_AUTH_MODE="disabled", RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S="0",
                       PYTHONPATH=str(REPO))
    environment.pop("RAY_ADDRESS", None)
    temp = Path(tempfile.mkdtemp(prefix="rmbg-ray-"))  # short: Ray's socket paths live below it
    log = tmp_path / "head.log"
    with open(log, "wb") as output:
        head = subprocess.Popen([str(Path(sys.executable).with_name("ray")), "start", "--head", "--block",
                                 "--node-ip-address", "127.0.0.1", "--port", str(port), "--num-cpus", "2",
                                 "--include-dashboard=false", "--disable-usage-stats", "--temp-dir", str(temp)],
                                stdout=output, stderr=subprocess.STDOUT, env=environment, start_new_session=True)
    try:
        wait_for(lambda: b"Ray runtime started" in log.read_bytes(), head, log)
        out = tmp_path / "out"
        job = subprocess.run([sys.executable, "-m", "rmbg_core", "remove", str(photos), "-o", str(out), "-r",
                              "--engine", "ray", "--address", f"127.0.0.1:{port}", "--num-workers", "1",
                              "--model", str(fixture_dir), *SMALL, "--json"],
                             cwd=tmp_path, env=environment, capture_output=True, text=True, timeout=TIMEOUT)
        assert job.returncode == 1, job.stderr
        summary = json.loads(job.stdout)
        assert (summary["written"], failed_inputs(summary)) == (2, ["corrupt.png", "empty.jpg"])
        assert files(out) == files(local_outputs)
        assert list((temp / "session_latest" / "logs").glob("python-core-driver-*"))  # the CLI joined this head
    finally:
        stop(head)
        shutil.rmtree(temp, ignore_errors=True)


def test_sigterm_stops_a_ray_job_cleanly_with_130(fixture_dir, tmp_path):
    """The rmbg command's stop signals survive Ray's start (its core installs a SIGTERM handler of its own)."""
    photos = tmp_path / "photos"
    photos.mkdir()
    for i in range(8):
        shutil.copy(fixture_dir / "chelsea.png", photos / f"p{i}.png")
    out = tmp_path / "out"
    job = subprocess.Popen([sys.executable, "-m", "rmbg_core", "remove", str(photos), "-o", str(out), "--engine",
                            "ray", "--num-workers", "1", "--model", str(fixture_dir), "--device", "cpu", "--json"],
                           cwd=tmp_path, env=dict(os.environ, PYTHONPATH=str(REPO)), stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: any(out.glob("*.png")), job, tmp_path / "none", seconds=TIMEOUT)  # mid-job
        job.send_signal(signal.SIGTERM)
        stdout, stderr = job.communicate(timeout=TIMEOUT)
    finally:
        if job.poll() is None:
            job.kill()
            job.wait()
    assert job.returncode == 130, stderr
    summary = json.loads(stdout)
    written = sorted(out.iterdir())
    assert summary["interrupted"] and summary["written"] <= len(written) < 8
    assert [path.suffix for path in written] == [".png"] * len(written)  # complete outputs only, no temp files
    for path in written:
        Image.open(path).load()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_for(ready, process: subprocess.Popen, log: Path, seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while not ready():
        assert process.poll() is None, f"the process exited:\n{_text(log)}"
        assert time.monotonic() < deadline, f"not ready after {seconds} s:\n{_text(log)}"
        time.sleep(0.5)


def _text(log: Path) -> str:
    return log.read_text(errors="replace") if log.is_file() else ""


def stop(head: subprocess.Popen) -> None:
    """SIGTERM to ``ray start --block``, which stops the processes it started (its session group if it hangs)."""
    head.send_signal(signal.SIGTERM)
    try:
        head.wait(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(head.pid, signal.SIGKILL)
        head.wait(timeout=30)


@pytest.fixture(scope="module")
def local_cluster():
    """An in-process two-CPU cluster whose workers import this checkout's rmbg_core."""
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False,
             runtime_env={"py_modules": [str(PACKAGE_DIR)]})
    yield
    ray.shutdown()


def test_ray_job_writes_what_the_local_cli_writes_resumes_and_overwrites(photos, local_outputs, fixture_dir,
                                                                         local_cluster, tmp_path, capsys):
    out = tmp_path / "out"
    command = ["remove", str(photos), "-o", str(out), "-r", "--model", str(fixture_dir), *SMALL, "--json",
               "--engine", "ray", "--num-workers", "2", "--batch-size", "2"]
    assert main(command) == 1
    summary = summary_of(capsys)
    assert (summary["written"], summary["skipped"], failed_inputs(summary)) == (2, 0, ["corrupt.png", "empty.jpg"])
    assert [failure["error"] for failure in summary["failed"]] == [
        f"{photos / 'corrupt.png'}: corrupt or truncated image (image file is truncated)",
        f"{photos / 'empty.jpg'}: empty file"]
    assert files(out) == files(local_outputs)

    (out / "chelsea.png").write_bytes(b"an older output")
    assert main(command) == 1  # the bad files are tried again; the outputs there are kept
    summary = summary_of(capsys)
    assert (summary["written"], summary["skipped"], len(summary["failed"])) == (0, 2, 2)
    assert (out / "chelsea.png").read_bytes() == b"an older output"

    assert main([*command, "--overwrite"]) == 1
    assert (summary_of(capsys)["written"], files(out)) == (2, files(local_outputs))


def test_uri_inputs_and_outputs_mask_webp_with_refinements(photos, fixture_dir, local_cluster, tmp_path, capsys):
    options = ["--mask-only", "--format", "webp", "--fill-holes", "--grow", "2", "--model", str(fixture_dir), *SMALL]
    local = tmp_path / "local"
    assert main(["remove", str(photos / "chelsea.png"), str(photos / "sub"), "-o", str(local), *options]) == 0
    out = tmp_path / "out"
    assert main(["remove", f"file://{photos}/chelsea.png", f"file://{photos}/sub", "-o", f"file://{out}",
                 *options, "--engine", "ray", "--num-workers", "1", "--json"]) == 0
    capsys.readouterr()
    assert sorted(files(out)) == ["chelsea.webp", "coffee.webp"]
    assert files(out) == files(local)


def test_the_predictor_in_a_pipeline_of_ones_own(photos, fixture_dir, local_cluster):
    """The README's example: read_binary_files -> map_batches(RemoveBackground) -> rows."""
    dataset = ray.data.read_binary_files(str(photos), include_paths=True)
    dataset = dataset.map_batches(RemoveBackground, fn_constructor_kwargs={"model": str(fixture_dir), "device": "cpu",
                                                                          "input_size": 64, "background": "#ffffff",
                                                                          "output_format": "jpg"},
                                  batch_size=4, compute=ray.data.ActorPoolStrategy(size=1))
    rows = {Path(row["path"]).name: row for row in dataset.iter_rows()}
    assert sorted(rows) == ["chelsea.png", "coffee.png", "corrupt.png", "empty.jpg"]
    assert rows["empty.jpg"]["error"].endswith("empty.jpg: empty file")
    assert "corrupt or truncated image" in rows["corrupt.png"]["error"] and rows["corrupt.png"]["output"] == b""
    for name in ("chelsea.png", "coffee.png"):
        expected = remove_background(rows[name]["path"], model=fixture_dir, background="#ffffff",
                                     input_size=SMALL_INPUT)
        assert rows[name]["error"] == ""
        assert rows[name]["output"] == OUTPUT_FORMATS["jpg"].encode(expected)
        assert (rows[name]["width"], rows[name]["height"]) == expected.size


def test_gpus_per_worker_places_the_actors_on_gpus(local_cluster, monkeypatch, tmp_path):
    """No GPU here: check what the model stage asks Ray for (the dataset is built, not run)."""
    stages: list[dict] = []
    map_batches = ray.data.Dataset.map_batches

    def record(self, fn, **options):
        stages.append({"fn": fn, **options})
        return map_batches(self, fn, **options)

    monkeypatch.setattr(ray.data.Dataset, "map_batches", record)
    build_dataset([Task(tmp_path / "a.jpg", tmp_path / "a.png")], {"model": "m", "device": "auto"},
                  Cluster(num_workers=3, gpus_per_worker=0.5, cpus_per_worker=2, batch_size=8))
    model_stage, = [stage for stage in stages if stage["fn"] is RemoveBackground]
    assert (model_stage["num_gpus"], model_stage["num_cpus"], model_stage["batch_size"]) == (0.5, 2, 8)
    assert model_stage["compute"].min_size == model_stage["compute"].max_size == 3
    assert model_stage["fn_constructor_kwargs"]["device"] == "auto"
