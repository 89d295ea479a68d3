"""rmbg_core.ray without a cluster: the predictor called as Ray Data calls it, the URI stores and planning,
and the command line's checks that run before any cluster starts (tests/test_ray_cluster.py runs Ray)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("ray", reason="the [ray] extra is not installed (pip install 'rmbg-kit[ray]')")

from pyarrow import fs  # noqa: E402  (comes with ray[data])

from rmbg_core import RMBGError, RMBGModel, remove_background  # noqa: E402
from rmbg_core.cli.main import build_parser, main  # noqa: E402
from rmbg_core.formats import OUTPUT_FORMATS  # noqa: E402
from rmbg_core.ray import RemoveBackground  # noqa: E402
from rmbg_core.ray.command import plan_ray_job, predictor_options  # noqa: E402
from rmbg_core.ray.job import Cluster  # noqa: E402
from rmbg_core.ray.storage import RemoteStore, write_bytes  # noqa: E402

from conftest import REPO, SMALL_INPUT  # noqa: E402
from test_faults import photo  # noqa: E402

SMALL = {"device": "cpu", "dtype": "float32", "input_size": SMALL_INPUT}


def test_predictor_rows_are_remove_backgrounds_outputs_and_bad_files_are_error_rows(fixture_dir):
    chelsea, coffee = (fixture_dir / "chelsea.png").read_bytes(), (fixture_dir / "coffee.png").read_bytes()
    predictor = RemoveBackground(fixture_dir, **SMALL)
    batch = {"bytes": np.array([chelsea, b"", b"not an image", coffee, coffee], dtype=object),
             "path": np.array(["in/chelsea.png", "in/empty.png", "in/junk.png", "in/coffee.png", "in/gone.png"]),
             "error": np.array(["", None, "", "", "in/gone.png: cannot read (no such file)"], dtype=object),
             "id": np.arange(5)}
    rows = predictor(batch)
    assert sorted(rows) == ["error", "height", "id", "output", "path", "width"]  # no bytes going further
    assert list(rows["id"]) == [0, 1, 2, 3, 4] and list(rows["path"]) == list(batch["path"])
    assert list(rows["error"][[0, 3]]) == ["", ""]
    assert rows["error"][1] == "in/empty.png: empty file"
    assert rows["error"][2] == "in/junk.png: not an image file (or a format Pillow cannot read)"
    assert rows["error"][4] == "in/gone.png: cannot read (no such file)"  # passed on, not decoded
    assert list(rows["output"][[1, 2, 4]]) == [b"", b"", b""] and list(rows["width"][[1, 2, 4]]) == [0, 0, 0]
    for row, name in ((0, "chelsea"), (3, "coffee")):
        expected = remove_background(fixture_dir / f"{name}.png", model=predictor.model, input_size=SMALL_INPUT)
        assert rows["output"][row] == OUTPUT_FORMATS["png"].encode(expected)
        assert (rows["width"][row], rows["height"][row]) == expected.size


def test_predictor_runs_one_forward_pass_per_batch(checkpoint_dir, fixture_dir, monkeypatch):
    calls: list[int] = []
    predict = RMBGModel.predict
    monkeypatch.setattr(RMBGModel, "predict",
                        lambda self, images, **options: calls.append(len(images)) or predict(self, images, **options))
    predictor = RemoveBackground(checkpoint_dir, return_mask=True, output_format="webp", **SMALL)
    photos = [(fixture_dir / f"{name}.png").read_bytes() for name in ("astronaut", "chelsea", "coffee")]
    rows = predictor({"bytes": np.array([*photos, b"\x89PNG broken"], dtype=object),
                      "path": np.array(["a.png", "b.png", "c.png", "d.png"])})
    assert calls == [3]
    assert list(rows["error"][:3]) == ["", "", ""] and rows["error"][3].startswith("d.png: ")


@pytest.mark.parametrize("options, problem", [
    ({"output_format": "jpg"}, "needs a background colour"),
    ({"output_format": "tiff"}, "output_format must be one of"),
    ({"refine": {"grow": 1.5}}, "grow must be a whole number"),
    ({"background": "#12345"}, "#12345"),
    ({"input_size": 0}, "input_size"),
])
def test_predictor_checks_its_options_when_the_actor_starts(checkpoint_dir, options, problem):
    with pytest.raises(RMBGError, match=problem):
        RemoveBackground(checkpoint_dir, **{**SMALL, **options})


def test_the_core_and_the_cli_never_import_ray_or_pyarrow():
    code = ("import sys, rmbg_core, rmbg_core.cli.main, rmbg_core.ray, rmbg_core.cli.jobs; rmbg_core.remove_background; "
            "rmbg_core.cli.main.build_parser(); print(sorted(m for m in ('ray', 'pyarrow') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120,
                         env=dict(os.environ, PYTHONPATH=str(REPO)))
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_engine_ray_without_the_extra_is_one_line_and_exit_2(tmp_path):
    code = ("import sys; sys.modules['ray'] = None; from rmbg_core.cli.main import main; "
            f"sys.exit(main(['remove', {str(tmp_path)!r}, '-o', {str(tmp_path / 'out')!r}, '--engine', 'ray']))")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120,
                         env=dict(os.environ, PYTHONPATH=str(REPO)))
    assert out.returncode == 2
    assert out.stderr == ("rmbg: error: --engine ray needs Ray Data (ray is not installed): "
                          "pip install 'rmbg-kit[ray]'\n")


@pytest.mark.parametrize("arguments, message", [
    (["IN", "-o", "OUT", "--num-workers", "2"], "--num-workers needs --engine ray"),
    (["IN", "-o", "OUT", "--address", "127.0.0.1:6379"], "--address needs --engine ray"),
    (["-", "--engine", "ray"], "'-' (stdin) works with the local engine only; drop --engine ray"),
    (["IN", "file:///elsewhere", "-o", "OUT", "--engine", "ray"],
     "INPUTs must be all local paths or all URIs (s3://..., file://...)"),
    (["IN", "-o", "OUT", "--engine", "ray", "--device", "cuda"],
     "--device cuda needs --gpus-per-worker above 0 with --engine ray (Ray gives GPUs only to the workers that "
     "ask for them)"),
])
def test_engine_options_are_checked_before_any_cluster_starts(fixture_dir, tmp_path, monkeypatch, capsys,
                                                              arguments, message):
    monkeypatch.chdir(tmp_path)
    photo(tmp_path / "IN" / "a.jpg")
    assert main(["remove", *arguments, "--model", str(fixture_dir)]) == 2
    assert capsys.readouterr().err.splitlines() == [f"rmbg: error: {message}"]
    assert not (tmp_path / "OUT").exists()


def test_json_summary_keeps_stdout_to_itself_while_ray_prints(fixture_dir, tmp_path, monkeypatch, capsys):
    """Ray's driver prints cluster messages (e.g. '(raylet) Task ... failed' when workers stop) to stdout;
    with --json, stdout must hold only the summary."""
    import rmbg_core.ray.command as command

    def noisy_run(tasks, summary, **_):
        print("(raylet) Task MapWorker(MapBatches(RemoveBackground)).submit failed.")
        summary.written += len(tasks)
        return summary

    monkeypatch.setattr(command, "connect", lambda address: False)
    monkeypatch.setattr(command.ray, "cluster_resources", lambda: {"CPU": 2.0})
    monkeypatch.setattr(command, "run_on_ray", noisy_run)
    photo(tmp_path / "in" / "a.jpg")
    code = main(["remove", str(tmp_path / "in"), "-o", str(tmp_path / "out"), "--engine", "ray", "--json",
                 "--model", str(fixture_dir)])
    captured = capsys.readouterr()
    assert code == 0
    assert json.loads(captured.out)["written"] == 1
    assert "(raylet)" in captured.err


def test_gpu_workers_get_the_auto_device_and_cpu_workers_the_cpu():
    parser = build_parser()
    gpu = parser.parse_args(["remove", "x", "-o", "y", "--engine", "ray", "--gpus-per-worker", "0.5"])
    cpu = parser.parse_args(["remove", "x", "-o", "y", "--engine", "ray"])
    edges = {"refine": None, "estimate_foreground": False}
    assert predictor_options(gpu, edges, Cluster(gpus_per_worker=0.5))["device"] == "auto"  # CUDA, float16 there
    assert predictor_options(cpu, edges, Cluster())["device"] == "cpu"
    assert predictor_options(cpu, edges, Cluster())["dtype"] == "auto"


@pytest.fixture
def tree(tmp_path) -> Path:
    for name in ("a.jpg", "B.PNG", ".hidden.png", "sub/c.webp", ".git/x.png"):
        photo(tmp_path / "in" / name)
    (tmp_path / "in" / "notes.txt").write_text("not an image")
    (tmp_path / "empty").mkdir()
    return tmp_path


def test_uri_inputs_and_outputs_are_found_and_named_as_local_ones(tree):
    base = f"file://{tree}"
    arguments = [f"{base}/in", f"{base}/missing", f"{base}/in/*.png", f"{base}/empty"]
    plan, input_store, output_store = plan_ray_job(arguments, f"{base}/out", suffix=".png", recursive=True)
    assert isinstance(input_store, RemoteStore) and isinstance(output_store, RemoteStore)
    assert [(task.source, task.output) for task in plan.tasks] == [
        (f"{base}/in/B.PNG", f"{base}/out/B.png"), (f"{base}/in/a.jpg", f"{base}/out/a.png"),
        (f"{base}/in/sub/c.webp", f"{base}/out/sub/c.png")]
    assert [failure.error for failure in plan.failures] == [
        f"{base}/missing: no such file or folder",
        f"{base}/in/*.png: glob patterns work on local paths only; name the folder instead"]
    assert plan.notes == [f"{base}/empty: no image files in this folder"]

    write_bytes(output_store, f"{base}/out/a.png", b"done before")
    again, _, _ = plan_ray_job([f"{base}/in"], f"{base}/out", suffix=".png")
    assert [task.output for task in again.skipped] == [f"{base}/out/a.png"]
    assert [task.output for task in again.tasks] == [f"{base}/out/B.png"]  # not recursive: sub/ left out


def test_a_uri_output_never_replaces_a_local_input(tree):
    plan, _, _ = plan_ray_job([str(tree / "in")], f"file://{tree}/in", suffix=".jpg", overwrite=True)
    assert [task.source for task in plan.tasks] == [tree / "in" / "B.PNG"]
    assert plan.failures[0].error == (f"{tree / 'in' / 'a.jpg'}: the output file://{tree}/in/a.jpg would replace "
                                      "the input itself; choose another output folder")


def test_writes_on_a_file_system_without_atomic_put_go_through_a_temp_file(tmp_path):
    store = RemoteStore(fs.SubTreeFileSystem(str(tmp_path), fs.LocalFileSystem()), "tree://")
    write_bytes(store, "tree://out/a.png", b"complete")
    assert (tmp_path / "out" / "a.png").read_bytes() == b"complete"
    (tmp_path / "out" / "b.png").mkdir()
    (tmp_path / "out" / "b.png" / "keep").write_text("a folder where the output should go")
    with pytest.raises(OSError):
        write_bytes(store, "tree://out/b.png", b"never seen")
    assert sorted(path.name for path in (tmp_path / "out").iterdir()) == ["a.png", "b.png"]  # no temp file left
