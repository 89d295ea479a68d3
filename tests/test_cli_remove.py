"""``rmbg remove`` in-process: outputs, skip/overwrite, --json, usage errors, faults, interruption and resume.

Uses the ``fast_model`` fixture (random weights at a small network input); subprocess tests at the real
size are in test_cli_process.py.
"""

from __future__ import annotations

import io
import json
import os
import signal
import sys

import numpy as np
import pytest
import torch
from PIL import Image

import rmbg_core.cli.jobs as jobs_module
from rmbg_core import remove_background
from rmbg_core.cli.main import main
from rmbg_core.files import PART_SUFFIX


def photo(path, height=24, width=32, seed=0, mode="RGB"):
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    Image.fromarray(pixels).convert(mode).save(path)
    return path


@pytest.fixture
def run(fast_model, checkpoint_dir, capsys):
    """Run ``rmbg remove ARGS`` on the fast model; returns (exit code, stdout, stderr)."""

    def invoke(*args):
        code = main(["remove", *map(str, args), "--model", str(checkpoint_dir), "--device", "cpu",
                     "--dtype", "float32"])
        out, err = capsys.readouterr()
        assert "Traceback" not in err
        return code, out, err

    return invoke


def parts(folder):
    return sorted(str(path) for path in folder.rglob(f"*{PART_SUFFIX}"))


def test_cutouts_masks_and_composites(run, tmp_path):
    source = photo(tmp_path / "in" / "shoe.jpg", 30, 20)
    code, out, err = run(source, "-o", tmp_path / "cut")
    assert code == 0 and out == ""
    cut = Image.open(tmp_path / "cut" / "shoe.png")
    assert cut.mode == "RGBA" and cut.size == (20, 30)
    assert "1 written" in err

    assert run(source, "-o", tmp_path / "mask", "--mask-only")[0] == 0
    mask = Image.open(tmp_path / "mask" / "shoe.png")
    assert mask.mode == "L"
    assert np.array_equal(np.asarray(mask), np.asarray(cut)[..., 3])

    assert run(source, "-o", tmp_path / "jpg", "--background", "#ffffff", "--format", "jpg")[0] == 0
    assert Image.open(tmp_path / "jpg" / "shoe.jpg").mode == "RGB"

    assert run(source, "-o", tmp_path / "webp", "--format", "webp")[0] == 0
    webp = Image.open(tmp_path / "webp" / "shoe.webp")
    assert np.array_equal(np.asarray(webp), np.asarray(cut)), "webp outputs are lossless"


def test_results_equal_the_python_api(run, tmp_path, fast_model):
    sources = [photo(tmp_path / "in" / f"p{i}.png", 20 + i, 30 - i, seed=i) for i in range(3)]
    assert run(tmp_path / "in", "-o", tmp_path / "out", "--batch-size", "2")[0] == 0
    for source in sources:
        expected = np.asarray(remove_background(source, model=fast_model), dtype=int)
        written = np.asarray(Image.open(tmp_path / "out" / source.name), dtype=int)
        assert np.abs(expected - written).max() <= 1


def test_existing_outputs_are_skipped_unless_overwrite(run, tmp_path):
    for i in range(2):
        photo(tmp_path / "in" / f"p{i}.png", seed=i)
    assert run(tmp_path / "in", "-o", tmp_path / "out")[0] == 0
    (tmp_path / "out" / "p0.png").write_bytes(b"kept as is")

    code, out, err = run(tmp_path / "in", "-o", tmp_path / "out")
    assert code == 0 and "0 written, 2 skipped (output exists; --overwrite to redo)" in err
    assert (tmp_path / "out" / "p0.png").read_bytes() == b"kept as is"

    code, out, _ = run(tmp_path / "in", "-o", tmp_path / "out", "--overwrite", "--json")
    assert code == 0 and json.loads(out)["written"] == 2
    assert Image.open(tmp_path / "out" / "p0.png").mode == "RGBA"


def test_json_summary_schema(run, tmp_path):
    photo(tmp_path / "in" / "good.png")
    (tmp_path / "in" / "bad.png").write_bytes(b"")
    photo(tmp_path / "out" / "old.png")
    photo(tmp_path / "in" / "old.png")
    code, out, err = run(tmp_path / "in", "-o", tmp_path / "out", "--json")
    assert code == 1
    summary = json.loads(out)
    assert set(summary) == {"written", "skipped", "failed", "interrupted", "seconds", "images_per_second"}
    assert summary["written"] == 1 and summary["skipped"] == 1 and summary["interrupted"] is False
    assert summary["failed"] == [{"input": str(tmp_path / "in" / "bad.png"),
                                  "error": f"{tmp_path / 'in' / 'bad.png'}: empty file"}]
    assert isinstance(summary["seconds"], float) and summary["seconds"] > 0
    assert summary["images_per_second"] == pytest.approx(1 / summary["seconds"], rel=0.01)
    assert err.strip() == f"rmbg: failed: {tmp_path / 'in' / 'bad.png'}: empty file"


def test_bad_inputs_are_named_on_one_line_and_the_rest_go_on(run, tmp_path, monkeypatch):
    folder = tmp_path / "in"
    photo(folder / "good.png")
    photo(folder / "huge.png", 64, 64)
    (folder / "text.jpg").write_text("this is not a photo")
    (folder / "cut.png").write_bytes((folder / "good.png").read_bytes()[:60])
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # huge.png (4096 px) trips the bomb guard
    code, out, err = run(folder, tmp_path / "nothere.png", str(folder / "*.gif"), "-o", tmp_path / "out")
    assert code == 1
    lines = err.strip().splitlines()
    expected = {f"{tmp_path / 'nothere.png'}: no such file or folder",
                f"{folder / '*.gif'}: no image files match this pattern",
                f"{folder / 'text.jpg'}: not an image file",
                f"{folder / 'huge.png'}: image too large to decode safely",
                f"{folder / 'cut.png'}: corrupt or truncated image"}
    for start in expected:
        assert sum(line.startswith(f"rmbg: failed: {start}") for line in lines) == 1, start
    assert lines[-1].startswith("rmbg: 1 written, 5 failed in ")
    assert sorted(os.listdir(tmp_path / "out")) == ["good.png"]


def test_unreadable_file_is_reported(run, tmp_path, monkeypatch):
    locked = photo(tmp_path / "in" / "locked.png")
    photo(tmp_path / "in" / "open.png")
    locked.chmod(0)
    if os.name != "posix" or os.geteuid() == 0:  # root reads any file: make opening it fail as it would
        open_file = Image.open

        def denied(source, *args, **kwargs):
            if os.fspath(getattr(source, "name", source)) == str(locked) or source == locked:
                raise PermissionError(13, "Permission denied")
            return open_file(source, *args, **kwargs)

        monkeypatch.setattr(Image, "open", denied)
    try:
        code, _, err = run(tmp_path / "in", "-o", tmp_path / "out")
    finally:
        locked.chmod(0o644)
    assert code == 1 and f"rmbg: failed: {locked}: permission denied" in err
    assert os.listdir(tmp_path / "out") == ["open.png"]


def test_recursive_keeps_layout_and_never_reads_its_own_outputs(run, tmp_path):
    photo(tmp_path / "shoot" / "a.png")
    photo(tmp_path / "shoot" / "day2" / "b.jpg", seed=1)
    out = tmp_path / "shoot" / "cutouts"
    assert run(tmp_path / "shoot", "-o", out, "-r")[0] == 0
    assert sorted(str(p.relative_to(out)) for p in out.rglob("*")) == ["a.png", "day2", "day2/b.png"]
    code, _, err = run(tmp_path / "shoot", "-o", out, "-r")
    assert code == 0 and "0 written, 2 skipped" in err


def test_colliding_output_names_are_failures_not_overwrites(run, tmp_path):
    photo(tmp_path / "one" / "x.png")
    photo(tmp_path / "two" / "x.png", seed=1)
    code, _, err = run(tmp_path / "one", tmp_path / "two", "-o", tmp_path / "out")
    assert code == 1 and f"{tmp_path / 'two' / 'x.png'}: output {tmp_path / 'out' / 'x.png'} is already" in err


@pytest.mark.parametrize("args,message", [
    (["-o", "{out}", "--format", "jpg"], "--format jpg needs --background"),
    (["-o", "{out}", "--mask-only", "--background", "#000000"], "--mask-only and --background cannot be combined"),
    (["-o", "{out}", "--background", "sky blue"], "background colour 'sky blue' is not a hex colour"),
    ([], "-o/--output-dir is required"),
    (["-o", "{out}", "--batch-size", "0"], "--batch-size: must be 1 or more"),
    (["-o", "{out}", "--format", "gif"], "invalid choice: 'gif'"),
    (["-o", "{out}", "--device", "tpu"], "unknown device 'tpu'; use --device auto, cpu, cuda, cuda:N or mps"),
    (["-o", "{out}", "--dtype", "int8"], "unknown dtype 'int8'; use --dtype auto, float32, float16 or bfloat16"),
    pytest.param(["-o", "{out}", "--device", "cuda"], "CPU-only torch build); use --device cpu or --device auto",
                 marks=pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")),
    (["-o", "{out}", "--model", "{out}/missing.safetensors"], "missing.safetensors: no such checkpoint file"),
])
def test_usage_errors_exit_2_without_traceback(checkpoint_dir, tmp_path, capsys, args, message):
    source = photo(tmp_path / "a.png")
    argv = ["remove", str(source), "--model", str(checkpoint_dir)] + [a.format(out=tmp_path / "out") for a in args]
    try:
        code = main(argv)
    except SystemExit as exit_:  # argparse's own errors
        code = exit_.code
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    assert message in err.strip().splitlines()[-1] and ": error: " in err  # one line (argparse adds usage above)
    assert not (tmp_path / "out").exists()


def test_output_dir_that_is_a_file_is_a_usage_error(run, tmp_path):
    (tmp_path / "out").write_text("a file")
    code, _, err = run(photo(tmp_path / "a.png"), "-o", tmp_path / "out")
    assert code == 2 and "is not a folder" in err


def test_an_empty_folder_is_a_note_and_needs_no_model(tmp_path, capsys):
    (tmp_path / "inbox").mkdir()
    code = main(["remove", str(tmp_path / "inbox"), "-o", str(tmp_path / "out"), "--model", "/no/such/model"])
    err = capsys.readouterr().err
    assert code == 0 and "no image files in this folder" in err and "0 written" in err


def test_interrupt_mid_write_leaves_complete_files_and_a_rerun_resumes(run, tmp_path, monkeypatch):
    """Ctrl-C arrives while the third output is half written: the first two are complete, nothing else
    exists (not even a temp file), the exit code is 130; the rerun writes only the missing outputs."""
    for i in range(5):
        photo(tmp_path / "in" / f"p{i}.png", seed=i)
    write_atomic = jobs_module.write_atomic
    calls = []

    def interrupted_on_third(target, write):
        calls.append(target)
        if len(calls) == 3:
            def half_then_ctrl_c(handle):
                handle.write(b"\x89PNG half")
                raise KeyboardInterrupt
            return write_atomic(target, half_then_ctrl_c)
        return write_atomic(target, write)

    monkeypatch.setattr(jobs_module, "write_atomic", interrupted_on_third)
    code, out, err = run(tmp_path / "in", "-o", tmp_path / "out", "--workers", "0", "--json")
    assert code == 130
    summary = json.loads(out)
    assert summary["interrupted"] is True and summary["written"] == 2
    assert sorted(os.listdir(tmp_path / "out")) == ["p0.png", "p1.png"]
    assert parts(tmp_path) == []
    before = {name: os.stat(tmp_path / "out" / name).st_mtime_ns for name in ("p0.png", "p1.png")}

    monkeypatch.setattr(jobs_module, "write_atomic", write_atomic)
    code, out, _ = run(tmp_path / "in", "-o", tmp_path / "out", "--json")
    summary = json.loads(out)
    assert code == 0 and summary["written"] == 3 and summary["skipped"] == 2
    assert sorted(os.listdir(tmp_path / "out")) == [f"p{i}.png" for i in range(5)]
    assert {name: os.stat(tmp_path / "out" / name).st_mtime_ns for name in before} == before
    for i in range(5):
        Image.open(tmp_path / "out" / f"p{i}.png").load()


def test_interrupt_with_writer_threads_keeps_finished_outputs(run, tmp_path, monkeypatch):
    for i in range(4):
        photo(tmp_path / "in" / f"p{i}.png", seed=i)
    write = jobs_module._write

    def ctrl_c_on_second(image, output, output_format):
        if output.name == "p1.png":
            raise KeyboardInterrupt
        return write(image, output, output_format)

    monkeypatch.setattr(jobs_module, "_write", ctrl_c_on_second)
    code, _, err = run(tmp_path / "in", "-o", tmp_path / "out", "--workers", "2")
    assert code == 130 and "interrupted: rerun the same command to resume" in err
    assert "p0.png" in os.listdir(tmp_path / "out") and "p1.png" not in os.listdir(tmp_path / "out")
    assert parts(tmp_path) == []


def test_stdin_errors_are_one_line(run, tmp_path, monkeypatch):
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"plain text, not a picture")))
    monkeypatch.setattr(sys, "stdout", io.TextIOWrapper(io.BytesIO()))
    code, _, err = run("-")
    assert code == 1 and err.strip() == "rmbg: failed: <stdin>: not an image file (or a format Pillow cannot read)"


def test_stdin_cannot_mix_with_files_or_output_dir(run, tmp_path):
    assert run("-", photo(tmp_path / "a.png"))[0] == 2
    code, _, err = run("-", "-o", tmp_path / "out")
    assert code == 2 and "drop -o/--output-dir" in err


def test_sigterm_stops_like_ctrl_c_and_the_handler_is_restored(run, tmp_path, monkeypatch):
    for i in range(3):
        photo(tmp_path / "in" / f"p{i}.png", seed=i)
    write = jobs_module._write

    def terminate_after_first(image, output, output_format):
        result = write(image, output, output_format)
        os.kill(os.getpid(), signal.SIGTERM)
        return result

    monkeypatch.setattr(jobs_module, "_write", terminate_after_first)
    before = signal.getsignal(signal.SIGTERM)
    code, out, err = run(tmp_path / "in", "-o", tmp_path / "out", "--workers", "0", "--json")
    assert code == 130 and json.loads(out)["interrupted"] is True
    assert os.listdir(tmp_path / "out") == ["p0.png"] and parts(tmp_path) == []
    assert signal.getsignal(signal.SIGTERM) is before


@pytest.mark.parametrize("flags,options", [
    (["--threshold", "0.5", "--keep-largest"], {"refine": {"threshold": 0.5, "keep_largest": True}}),
    (["--fill-holes", "--grow", "-2", "--feather", "1.5", "--invert"],
     {"refine": {"fill_holes": True, "grow": -2, "feather": 1.5, "invert": True}}),
    (["--min-area", "0.01", "--estimate-foreground"], {"refine": {"min_area": 0.01}, "estimate_foreground": True}),
    (["--levels", "0.3,0.7"], {"refine": {"levels": (0.3, 0.7)}}),
    (["--levels", "0.2, 0.8", "--keep-largest"], {"refine": {"levels": (0.2, 0.8), "keep_largest": True}}),
])
def test_edge_flags_match_the_python_api(run, tmp_path, fast_model, flags, options):
    source = photo(tmp_path / "in" / "p.png", 40, 50, seed=3)
    for extra, mask_only in (([], False), (["--mask-only"], True)):
        out = tmp_path / ("masks" if mask_only else "cutouts")
        assert run(source, "-o", out, *flags, *extra)[0] == 0
        expected = np.asarray(remove_background(source, model=fast_model, return_mask=mask_only, **options), dtype=int)
        written = np.asarray(Image.open(out / "p.png"), dtype=int)
        assert np.abs(expected - written).max() <= 1
    plain = np.asarray(remove_background(source, model=fast_model, return_mask=True), dtype=int)
    assert not np.array_equal(plain, np.asarray(Image.open(tmp_path / "masks" / "p.png"), dtype=int)), \
        "the flags must change the mask"


@pytest.mark.parametrize("flags,reason", [
    (["--feather", "-1"], "feather"),
    (["--threshold", "1.5"], "threshold"),
    (["--min-area", "2"], "min_area"),
    (["--levels", "0.7"], "levels must be two numbers LOW,HIGH"),
    (["--levels", "0.7,0.3"], "levels must be two numbers LOW,HIGH"),
])
def test_bad_edge_flags_are_usage_errors(run, tmp_path, flags, reason):
    source = photo(tmp_path / "in" / "p.png")
    code, _, err = run(source, "-o", tmp_path / "out", *flags)
    assert code == 2 and reason in err and err.count("\n") == 1
    assert not (tmp_path / "out" / "p.png").exists()
