"""``rmbg remove`` under faults, mostly as a real process (``python -m rmbg_core``, what the ``rmbg`` script
runs) with the real-weights fixture at a 64x64 network input, so each run takes seconds: no input is ever
overwritten, concurrent runs share an output folder, unreadable subfolders, unwritable output folders,
double signals, stdout faults, control characters in names, and the atomic write under SIGKILL.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from rmbg_core.cli.main import build_parser, main
from rmbg_core.files import PART_SUFFIX, write_atomic
from rmbg_core.cli.jobs import plan_job
from rmbg_core.cli.report import one_line

from conftest import REPO

TIMEOUT = 120
SMALL = ("--input-size", "64", "--device", "cpu", "--dtype", "float32")
posix_only = pytest.mark.skipif(os.name != "posix", reason="POSIX signals, permissions and /proc")


def photo(path: Path, height: int = 48, width: int = 64, seed: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)).save(path)
    return path


def rmbg(model: Path, *args, prefix: tuple = (), **popen) -> subprocess.Popen:
    """Start ``rmbg remove ARGS --model MODEL`` at the small input size; SIGINT back to its default in the child
    (a shell starting the tests in the background leaves it ignored, and Python keeps it so)."""
    popen.setdefault("stdout", subprocess.PIPE)
    popen.setdefault("stderr", subprocess.PIPE)
    popen.setdefault("preexec_fn", default_sigint)
    command = [*prefix, sys.executable, "-m", "rmbg_core", "remove", *map(str, args), "--model", str(model), *SMALL]
    return subprocess.Popen(command, cwd=REPO, env=dict(os.environ, PYTHONPATH=str(REPO)), **popen)


def default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def finish(process: subprocess.Popen, stdin: bytes | None = None) -> tuple[int, str, str]:
    out, err = process.communicate(stdin, timeout=TIMEOUT)
    return process.returncode, (out or b"").decode(errors="replace"), (err or b"").decode(errors="replace")


def assert_no_traceback(err: str) -> None:
    assert "Traceback" not in err and "Exception ignored" not in err, err


def parts(folder: Path) -> list[str]:
    return sorted(str(path) for path in folder.rglob(f"*{PART_SUFFIX}"))


def assert_images(paths) -> None:
    for path in paths:
        Image.open(path).load()  # a complete, decodable image


# A writer that stops half-way through ``write_atomic`` until told to go on (a line on stdin) or killed.
HALTING_WRITER = """
import sys
from rmbg_core.files import write_atomic
target, payload = sys.argv[1], open(sys.argv[2], "rb").read()
def write(handle):
    for start in range(0, len(payload) // 2, 65536):
        handle.write(payload[start:min(start + 65536, len(payload) // 2)])
    handle.flush()
    print("halfway", flush=True)
    sys.stdin.readline()
    handle.write(payload[len(payload) // 2:])
write_atomic(target, write)
"""


def start_halting_writer(target: Path, payload: Path) -> subprocess.Popen:
    writer = subprocess.Popen([sys.executable, "-c", HALTING_WRITER, str(target), str(payload)], cwd=REPO,
                              env=dict(os.environ, PYTHONPATH=str(REPO)), stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert writer.stdout.readline() == b"halfway\n", writer.communicate(timeout=TIMEOUT)
    return writer


def without_root_powers() -> tuple[str, ...]:
    """A command prefix that drops root's power to read and write anything (nothing when not root)."""
    if os.name != "posix":
        pytest.skip("POSIX permissions")
    if os.geteuid() != 0:
        return ()
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("running as root and setpriv (util-linux) is missing: cannot drop CAP_DAC_OVERRIDE")
    return (setpriv, "--inh-caps=-all", "--bounding-set=-dac_override,-dac_read_search", "--")


def check_denied(prefix: tuple[str, ...], code: str, path: Path) -> None:
    """Skip unless ``code`` (Python, ``path`` is ``sys.argv[1]``) fails under ``prefix``, as permissions say it must."""
    probe = subprocess.run([*prefix, sys.executable, "-c", code, str(path)], capture_output=True)
    if probe.returncode == 0:
        pytest.skip(f"{path}: permissions do not apply here, even without root's capabilities")


# 1. No output may replace an input -------------------------------------------------------------------------

def failures_by_input(plan) -> dict[str, str]:
    return {Path(failure.input).name: failure.error for failure in plan.failures}


def test_no_output_replaces_any_input_of_the_job(tmp_path):
    """Output = another input (a.jpg -> a.png), = itself, through a symlink, `..` or a hard link: refused."""
    folder = tmp_path / "photos"
    photo(folder / "a.jpg", seed=1)
    photo(folder / "a.png", seed=2)
    photo(folder / "b.jpg", seed=3)
    plan = plan_job([str(folder)], folder, suffix=".png", overwrite=True)
    assert [task.source.name for task in plan.tasks] == ["b.jpg"]
    refused = failures_by_input(plan)
    assert set(refused) == {"a.jpg", "a.png"}
    assert refused["a.jpg"] == (f"{folder / 'a.jpg'}: the output {folder / 'a.png'} would replace the input "
                                f"{folder / 'a.png'}; choose another output folder")

    dotted = folder / "sub" / ".."
    (folder / "sub").mkdir()
    assert set(failures_by_input(plan_job([str(folder)], dotted, suffix=".png", overwrite=True))) == {"a.jpg", "a.png"}

    out = tmp_path / "out"
    out.mkdir()
    (out / "c.png").symlink_to(folder / "a.png")
    os.link(folder / "a.png", out / "d.png")
    photo(tmp_path / "elsewhere" / "c.jpg")
    photo(tmp_path / "elsewhere" / "d.jpg")
    inputs = [str(folder / "a.png"), str(tmp_path / "elsewhere" / "c.jpg"), str(tmp_path / "elsewhere" / "d.jpg")]
    plan = plan_job(inputs, out, suffix=".png", overwrite=True)
    assert [task.output for task in plan.tasks] == [out / "a.png"]
    assert set(failures_by_input(plan)) == {"c.jpg", "d.jpg"}


@pytest.mark.parametrize("output_format", ["png", "webp"])
def test_output_folder_equal_to_the_input_folder_recursive(tmp_path, output_format):
    folder = tmp_path / "shoot"
    photo(folder / "day1" / "x.jpg", seed=1)
    photo(folder / "day1" / f"x.{output_format}", seed=2)
    photo(folder / "day2" / "y.jpg", seed=3)
    plan = plan_job([str(folder)], folder, suffix=f".{output_format}", recursive=True, overwrite=True)
    assert [str(task.output.relative_to(folder)) for task in plan.tasks] == [f"day2/y.{output_format}"]
    assert set(failures_by_input(plan)) == {"x.jpg", f"x.{output_format}"}


def test_cli_leaves_every_input_untouched_with_o_equal_to_the_input_folder(fixture_dir, tmp_path, capsys):
    folder = tmp_path / "photos"
    before = {name: photo(folder / name, seed=i).read_bytes() for i, name in enumerate(["a.jpg", "a.png"])}
    code = main(["remove", str(folder), "-o", str(folder), "--overwrite", "--model", str(fixture_dir), *SMALL])
    err = capsys.readouterr().err
    assert code == 1
    lines = err.splitlines()
    assert len(lines) == 3 and all(line.startswith("rmbg: failed: ") for line in lines[:2]), err
    assert {path.name: path.read_bytes() for path in folder.iterdir()} == before


# 2. Concurrent runs on one output folder ------------------------------------------------------------------

@posix_only
def test_concurrent_runs_on_one_output_folder_all_succeed(fixture_dir, tmp_path):
    """A writer paused mid-write on out/p0.png and two full runs with --overwrite over the same inputs at
    once: no run deletes another's live temp file; all three succeed and every output is a whole image."""
    inputs = tmp_path / "in"
    for i in range(4):
        photo(inputs / f"p{i}.jpg", seed=i)
    out = tmp_path / "out"
    out.mkdir()
    payload = tmp_path / "payload.png"
    photo(payload, 300, 400, seed=9)
    writer = start_halting_writer(out / "p0.png", payload)
    runs = [rmbg(fixture_dir, inputs, "-o", out, "--overwrite") for _ in range(2)]
    results = [finish(run) for run in runs]
    writer.stdin.write(b"go on\n")
    writer_code, _, writer_err = finish(writer)
    for code, _, err in results:
        assert code == 0 and "failed" not in err, err
        assert_no_traceback(err)
    assert writer_code == 0, writer_err
    assert (out / "p0.png").read_bytes() == payload.read_bytes()
    assert sorted(path.name for path in out.iterdir()) == [f"p{i}.png" for i in range(4)], "temp files left"
    assert_images(out.iterdir())


# 3. An unreadable subfolder -------------------------------------------------------------------------------

def test_recursive_run_goes_on_past_an_unreadable_subfolder(fixture_dir, tmp_path):
    prefix = without_root_powers()
    top = tmp_path / "shoot"
    photo(top / "a.png", seed=1)
    photo(top / "locked" / "b.png", seed=2)
    photo(top / "z" / "c.png", seed=3)
    (top / "locked").chmod(0)
    try:
        check_denied(prefix, "import os, sys; os.listdir(sys.argv[1])", top / "locked")
        code, _, err = finish(rmbg(fixture_dir, top, "-o", tmp_path / "out", "-r", prefix=prefix))
    finally:
        (top / "locked").chmod(0o755)
    assert_no_traceback(err)
    assert code == 1
    lines = err.splitlines()
    assert lines[0] == f"rmbg: failed: {top / 'locked'}: cannot list it (Permission denied)"
    assert len(lines) == 2 and lines[1].startswith("rmbg: 2 written, 1 failed in "), err
    assert sorted(str(p.relative_to(tmp_path / "out")) for p in (tmp_path / "out").rglob("*.png")) == ["a.png",
                                                                                                  "z/c.png"]


# Also: an unwritable output folder is found before the model loads ----------------------------------------

def test_output_folder_under_a_file_fails_before_the_model_loads(tmp_path, capsys):
    source = photo(tmp_path / "a.png")
    (tmp_path / "notes.txt").write_text("a file, not a folder")
    out = tmp_path / "notes.txt" / "out"
    code = main(["remove", str(source), "-o", str(out), "--model", str(tmp_path / "no-such-model.safetensors")])
    err = capsys.readouterr().err
    assert code == 2  # the folder is checked first: the (missing) model is never looked at
    assert err.splitlines() == [f"rmbg: error: {out}: cannot write outputs to this folder (Not a directory)"]


def test_read_only_output_folder_fails_before_the_model_loads(tmp_path):
    prefix = without_root_powers()
    source = photo(tmp_path / "a.png")
    out = tmp_path / "read-only"
    out.mkdir()
    out.chmod(0o555)
    try:
        check_denied(prefix, "import sys; open(sys.argv[1] + '/probe', 'w')", out)
        code, _, err = finish(rmbg(tmp_path / "no-such-model.safetensors", source, "-o", out, prefix=prefix))
    finally:
        out.chmod(0o755)
    assert code == 2  # the folder is checked first: the (missing) model is never looked at
    assert err.splitlines() == [f"rmbg: error: {out}: cannot write outputs to this folder (Permission denied)"]
    assert list(out.iterdir()) == []


# 4. Double signals ----------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def frames(tmp_path_factory) -> Path:
    """Ten 600x800 noise frames: about a second and a half of work after the model is loaded."""
    folder = tmp_path_factory.mktemp("frames")
    for i in range(10):
        photo(folder / f"f{i}.png", 600, 800, seed=i)
    return folder


def wait_for(condition, process: subprocess.Popen) -> None:
    started = time.monotonic()
    while not condition():
        assert process.poll() is None, f"exited {process.returncode} before the moment came: {process.communicate()}"
        assert time.monotonic() - started < TIMEOUT
        time.sleep(0.01)


@posix_only
@pytest.mark.parametrize("moment,first,then", [
    ("starting", signal.SIGTERM, signal.SIGTERM),
    ("loading the model", signal.SIGINT, signal.SIGINT),
    ("mid-job", signal.SIGINT, signal.SIGTERM),
])
def test_repeated_signals_end_in_130_with_no_traceback_and_no_temp_file(fixture_dir, frames, tmp_path, moment,
                                                                       first, then):
    """One signal, then a stream of more (every 5 ms) until the process ends: through the clean-up, the
    summary, the thread joins and interpreter exit. Always exit 130, no traceback, no temp file."""
    out = tmp_path / "out"
    process = rmbg(fixture_dir, frames, tmp_path / "missing.png", "-o", out)
    if moment == "starting":
        time.sleep(1.0)
    elif moment == "loading the model":  # the failure line of missing.png comes right before the model loads
        assert process.stderr.readline().startswith(b"rmbg: failed: ")
    else:
        wait_for(lambda: any(out.glob("*.png")), process)
    process.send_signal(first)
    deadline = time.monotonic() + TIMEOUT
    while process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
        process.send_signal(then)
    code, _, err = finish(process)
    assert_no_traceback(err)
    assert code == 130, err
    if moment == "mid-job":  # the clean-up ran to its end: the summary is the last line
        assert err.splitlines()[-1].endswith("; interrupted: rerun the same command to resume"), err
    else:
        assert err.splitlines()[-1] == "rmbg: interrupted", err
    written = list(out.glob("*.png")) if out.exists() else []
    assert len(written) < 10 and parts(tmp_path) == []
    assert_images(written)


# 5. stdout faults in '-' mode -----------------------------------------------------------------------------

def closed_pipe() -> int:
    read_end, write_end = os.pipe()
    os.close(read_end)  # like `| true` once true has exited
    return write_end


@posix_only
@pytest.mark.parametrize("fault", ["broken pipe", "/dev/full", "closed"])
def test_stdout_faults_are_one_error_line(fixture_dir, tmp_path, fault):
    image = photo(tmp_path / "in.png", 12, 16).read_bytes()  # its output fits in stdout's buffer: the exit flush fails too
    if fault == "broken pipe":
        stdout = closed_pipe()
        process = rmbg(fixture_dir, "-", stdin=subprocess.PIPE, stdout=stdout)
        os.close(stdout)
        reason = "Broken pipe"
    elif fault == "/dev/full":
        if not os.path.exists("/dev/full"):
            pytest.skip("no /dev/full")
        with open("/dev/full", "wb") as full:
            process = rmbg(fixture_dir, "-", stdin=subprocess.PIPE, stdout=full)
        reason = "No space left on device"
    else:
        process = rmbg(fixture_dir, "-", stdin=subprocess.PIPE, stdout=None,
                       preexec_fn=lambda: (default_sigint(), os.close(1)))
        reason = "stdout is closed"
    code, _, err = finish(process, image)
    assert_no_traceback(err)
    assert code == 1
    assert err.splitlines() == [f"rmbg: error: cannot write the result to stdout ({reason})"]


# 11. Control characters in names --------------------------------------------------------------------------

def test_control_characters_in_names_are_escaped_one_line_each(fixture_dir, real_model, tmp_path, capsys):
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "bad\nname.png").write_bytes(b"")  # empty: fails while decoding
    missing = tmp_path / "gone\r\x1b7.png"  # fails while planning
    code = main(["remove", str(folder), str(missing), "-o", str(tmp_path / "out"), "--json",
                 "--model", str(fixture_dir), *SMALL])
    out, err = capsys.readouterr()
    assert code == 1
    assert err.splitlines() == [f"rmbg: failed: {tmp_path}/gone\\r\\x1b7.png: no such file or folder",
                                f"rmbg: failed: {folder}/bad\\nname.png: empty file"]
    assert sorted(item["input"] for item in json.loads(out)["failed"]) == sorted([str(folder / "bad\nname.png"),
                                                                                 str(missing)])

    code = main(["remove", str(photo(folder / "good.png")), "-o", str(tmp_path / "out2"), "--model", "no\nsuch.pth"])
    assert code == 2
    assert capsys.readouterr().err.splitlines() == [
        "rmbg: error: no\\nsuch.pth: no such checkpoint file or folder (nor a Hugging Face repo id like "
        "'briaai/RMBG-1.4')"]


def test_one_line_escapes_every_control_character():
    assert one_line("a\nb\r\t\x00\x1b[31m\x7f\x85\u2028é ok") == "a\\nb\\r\\t\\x00\\x1b[31m\\x7f\\x85\\u2028é ok"


# --input-size ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("text,size", [("64", (64, 64)), ("48x80", (48, 80)), ("1024X768", (1024, 768))])
def test_input_size_option(text, size):
    args = build_parser().parse_args(["remove", "a.png", "-o", "out", "--input-size", text])
    assert args.input_size == size
    assert build_parser().parse_args(["remove", "a.png", "-o", "out"]).input_size == (1024, 1024)


@pytest.mark.parametrize("text", ["0", "64x", "x64", "8x8x8", "big", "-64"])
def test_bad_input_size_is_a_usage_error(text, capsys):
    with pytest.raises(SystemExit) as exit_:
        build_parser().parse_args(["remove", "a.png", "-o", "out", "--input-size", text])
    assert exit_.value.code == 2 and "argument --input-size" in capsys.readouterr().err


def test_input_size_reaches_the_network(fixture_dir, real_model, tmp_path, capsys, monkeypatch):
    from rmbg_core.model import processing

    seen = []
    original = processing.preprocess

    def spy(images, size, *args, **kwargs):
        seen.append(tuple(size))
        return original(images, size, *args, **kwargs)

    monkeypatch.setattr("rmbg_core.model.model.preprocess", spy)
    code = main(["remove", str(photo(tmp_path / "a.png")), "-o", str(tmp_path / "out"), "--model",
                 str(fixture_dir), "--input-size", "48x80", "--device", "cpu", "--dtype", "float32"])
    assert code == 0 and seen == [(48, 80)], capsys.readouterr().err
    assert Image.open(tmp_path / "out" / "a.png").size == (64, 48)


# Issue 19: the atomic write under a killed process --------------------------------------------------------

@posix_only
def test_a_writer_killed_mid_write_leaves_the_old_file_whole(tmp_path):
    """SIGKILL half-way through replacing out.bin: the old file is still whole, the temp file is left, and
    the next write removes it (its writer is dead) and completes. Fails if write_atomic writes in place."""
    target = tmp_path / "out.bin"
    target.write_bytes(b"old and complete")
    payload = tmp_path / "payload.bin"
    payload.write_bytes(os.urandom(4 << 20))
    writer = start_halting_writer(target, payload)
    writer.kill()
    writer.wait(timeout=TIMEOUT)
    assert target.read_bytes() == b"old and complete"
    left = parts(tmp_path)
    assert len(left) == 1 and os.path.getsize(left[0]) == 2 << 20
    write_atomic(target, lambda handle: handle.write(payload.read_bytes()))
    assert target.read_bytes() == payload.read_bytes() and parts(tmp_path) == []
