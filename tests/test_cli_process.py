"""``rmbg remove`` as a real process at the real 1024 input: the folder scenario with real weights,
kill-and-resume, stdin to stdout, and the offline default model."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from PIL import Image

from rmbg_core import remove_background
from rmbg_core.files import PART_SUFFIX

from conftest import REPO

TIMEOUT = 300


def rmbg(*args, **kwargs):
    """Start ``python -m rmbg_core.cli remove ARGS`` from the repository root (nothing installed).

    SIGINT is reset to its default in the child: a test run started in the background by a shell
    inherits SIGINT ignored, and Python keeps it ignored.
    """
    env = dict(os.environ, PYTHONPATH=str(REPO), **kwargs.pop("env", {}))
    return subprocess.Popen([sys.executable, "-m", "rmbg_core.cli", "remove", *map(str, args)], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL), **kwargs)


def finish(process, stdin=None):
    out, err = process.communicate(stdin, timeout=TIMEOUT)
    return process.returncode, out, err.decode()


def test_folder_with_good_and_broken_images(fixture_dir, real_model, tmp_path):
    """Done-when: nested, EXIF-rotated and grey images are written (layout kept, masks within one grey
    level of the reference), the truncated JPEG and the empty file are named, exit code 1, no traceback."""
    folder = tmp_path / "photos"
    (folder / "sub" / "deeper").mkdir(parents=True)
    Image.open(fixture_dir / "astronaut.png").save(folder / "sub" / "deeper" / "astronaut.png")
    exif = Image.Exif()
    exif[0x0112] = 6  # stored rotated; displays (and must be processed) upright
    Image.open(fixture_dir / "chelsea.png").transpose(Image.Transpose.ROTATE_90).save(folder / "chelsea.png", exif=exif)
    Image.open(fixture_dir / "coffee.png").convert("L").save(folder / "sub" / "grey.png")
    Image.open(fixture_dir / "coffee.png").save(folder / "truncated.jpg", quality=90)
    data = (folder / "truncated.jpg").read_bytes()
    (folder / "truncated.jpg").write_bytes(data[: len(data) // 2])
    (folder / "empty.png").write_bytes(b"")
    (folder / "notes.txt").write_text("shoot notes, not an image")
    out = tmp_path / "out"

    code, stdout, err = finish(rmbg(folder, "-o", out, "--recursive", "--mask-only", "--json", "--model", fixture_dir,
                                    "--device", "cpu", "--dtype", "float32"))
    assert code == 1 and "Traceback" not in err
    summary = json.loads(stdout)
    assert summary["written"] == 3 and summary["skipped"] == 0
    assert sorted(item["input"] for item in summary["failed"]) == [str(folder / "empty.png"), str(folder / "truncated.jpg")]
    lines = err.splitlines()
    assert len(lines) == 2
    assert lines[0] == f"rmbg: failed: {folder / 'empty.png'}: empty file"
    assert lines[1].startswith(f"rmbg: failed: {folder / 'truncated.jpg'}: corrupt or truncated image (")
    assert sorted(str(p.relative_to(out)) for p in out.rglob("*.png")) == ["chelsea.png", "sub/deeper/astronaut.png",
                                                                          "sub/grey.png"]
    for output, name in (("sub/deeper/astronaut.png", "astronaut"), ("chelsea.png", "chelsea")):
        mask = Image.open(out / output)
        expected = np.asarray(Image.open(fixture_dir / f"{name}.mask.png"), dtype=int)
        assert mask.mode == "L" and np.abs(np.asarray(mask, dtype=int) - expected).max() <= 1, output
    gray = np.asarray(Image.open(out / "sub" / "grey.png"), dtype=int)
    expected = np.asarray(remove_background(folder / "sub" / "grey.png", model=real_model, return_mask=True), dtype=int)
    assert np.abs(gray - expected).max() <= 1


@pytest.mark.skipif(os.name != "posix", reason="POSIX signals")
def test_killed_runs_leave_no_partial_output_and_a_rerun_writes_only_the_missing(checkpoint_dir, tmp_path):
    """kill -9 after the first output, Ctrl-C after the next, then a full run: each stop leaves only
    complete outputs (Ctrl-C also removes its temp files), and the last run writes just what is missing."""
    frames = 6
    folder = tmp_path / "frames"
    folder.mkdir()
    for i in range(frames):
        pixels = np.random.default_rng(i).integers(0, 256, (48, 64, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / f"frame{i}.png")
    out = tmp_path / "out"
    args = (folder, "-o", out, "--model", checkpoint_dir, "--device", "cpu", "--dtype", "float32")

    done: dict[str, os.stat_result] = {}
    leftovers: set = set()
    for sig, expected_code in ((signal.SIGKILL, -signal.SIGKILL), (signal.SIGINT, 130)):
        process = rmbg(*args)
        started = time.monotonic()
        while len(list(out.glob("*.png"))) <= len(done) and process.poll() is None:
            assert time.monotonic() - started < TIMEOUT, "no output appeared"
            time.sleep(0.02)
        seen = f"{sorted(path.name for path in out.glob('*.png'))} after {time.monotonic() - started:.1f} s"
        process.send_signal(sig)
        code, _, err = finish(process)
        assert code == expected_code and "Traceback" not in err, f"{sig!r}: exit {code} when {seen}; stderr: {err}"
        now = {path.name: path.stat() for path in out.glob("*.png")}
        assert len(done) < len(now) < frames, f"not stopped midway (images take a second or more): {sorted(now)}"
        for name, before in done.items():
            assert (now[name].st_ino, now[name].st_mtime_ns) == (before.st_ino, before.st_mtime_ns), name
        for name in now:
            Image.open(out / name).load()  # every output present is a complete image
        parts = set(out.glob(f".*{PART_SUFFIX}"))
        if sig == signal.SIGINT:
            assert parts <= leftovers, "Ctrl-C leaves no temp file (kill -9 may; they go when rewritten)"
        done, leftovers = now, parts

    code, stdout, err = finish(rmbg(*args, "--json"))
    summary = json.loads(stdout)
    assert code == 0 and summary["skipped"] == len(done) and summary["written"] == frames - len(done), (summary, err)
    assert sorted(path.name for path in out.iterdir()) == [f"frame{i}.png" for i in range(frames)], "temp files left"
    for name, before in done.items():
        after = (out / name).stat()
        assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns), f"{name} was rewritten"


def test_stdin_to_stdout(checkpoint_dir, tmp_path):
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (30, 45, 3), dtype=np.uint8)).save(tmp_path / "in.jpg")
    code, out, err = finish(rmbg("-", "--mask-only", "--model", checkpoint_dir, "--device", "cpu", "--dtype",
                                 "float32", stdin=subprocess.PIPE), stdin=(tmp_path / "in.jpg").read_bytes())
    assert code == 0 and err == ""
    mask = Image.open(io.BytesIO(out))
    assert mask.format == "PNG" and mask.mode == "L" and mask.size == (45, 30)


def test_offline_default_model_is_a_clear_error(tmp_path):
    Image.new("RGB", (8, 8)).save(tmp_path / "a.png")
    code, _, err = finish(rmbg(tmp_path / "a.png", "-o", tmp_path / "out",
                               env={"HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf-home")}))
    assert code == 2 and "Traceback" not in err
    assert err.strip().splitlines() == [
        "rmbg: error: briaai/RMBG-1.4: offline mode is on (HF_HUB_OFFLINE=1) and no copy is cached (download it "
        "once while online); or pass --model PATH (a local checkpoint file or folder)"]
