"""run.sh without installing anything: stand-in venvs whose ``python`` and ``rmbg`` only record how they
were called. ``./run.sh rmbg`` runs where the user is (relative paths work from any folder) and
``RMBG_TORCH`` reaches pip as separate arguments (an index URL for a CUDA build)."""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

from conftest import REPO

pytestmark = pytest.mark.skipif(shutil.which("bash") is None or shutil.which("sha1sum") is None,
                                reason="run.sh needs bash and sha1sum")

# Each stand-in program appends its name, working folder and arguments (one per line) to $RUN_SH_LOG.
RECORDER = """#!/bin/sh
{{ echo "{name}"; pwd; for arg in "$@"; do echo "  $arg"; done; }} >> "$RUN_SH_LOG"
"""
# A stand-in for the Python that makes the venv: `-m venv DIR` gives DIR/bin/python and DIR/bin/rmbg recorders.
VENV_MAKER = """#!/bin/sh
[ "$1" = "-m" ] && [ "$2" = "venv" ] || exit 3
mkdir -p "$3/bin"
cp "$RUN_SH_RECORDERS/python" "$RUN_SH_RECORDERS/rmbg" "$3/bin/"
"""


def executable(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


def stamp_name() -> str:
    """The set-up stamp run.sh looks for: this pyproject.toml's hash."""
    return ".installed-" + hashlib.sha1((REPO / "pyproject.toml").read_bytes()).hexdigest()[:12]


def calls(log: Path) -> list[tuple[str, str, list[str]]]:
    """(program, working folder, arguments) for each recorded call."""
    entries = []
    for line in log.read_text().splitlines():
        if line.startswith("  "):
            entries[-1][2].append(line[2:])
        elif entries and entries[-1][1] is None:
            entries[-1] = (entries[-1][0], line, entries[-1][2])
        else:
            entries.append((line, None, []))
    return entries


@pytest.fixture
def sandbox(tmp_path):
    """Recorders, a log, and a working folder elsewhere than the project."""
    recorders = tmp_path / "recorders"
    for name in ("python", "rmbg"):
        executable(recorders / name, RECORDER.format(name=name))
    work = tmp_path / "work"
    (work / "photos").mkdir(parents=True)
    env = dict(os.environ, RUN_SH_LOG=str(tmp_path / "log"), RUN_SH_RECORDERS=str(recorders))
    env.pop("RMBG_TORCH", None)
    return tmp_path, work, env


def run_sh(*args: str, cwd: Path, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(REPO / "run.sh"), *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=60)


def test_rmbg_runs_in_the_callers_folder_so_relative_paths_work(sandbox):
    tmp_path, work, env = sandbox
    venv = tmp_path / "venv"
    executable(venv / "bin" / "rmbg", RECORDER.format(name="rmbg"))
    (venv / stamp_name()).touch()  # set up already: nothing is installed
    result = run_sh("rmbg", "remove", "photos/", "-o", "out/", cwd=work, env=dict(env, RMBG_VENV=str(venv)))
    assert result.returncode == 0, result.stderr
    assert calls(tmp_path / "log") == [("rmbg", str(work), ["remove", "photos/", "-o", "out/"])]


def test_setup_gives_rmbg_torch_to_pip_as_separate_arguments(sandbox):
    tmp_path, work, env = sandbox
    maker = executable(tmp_path / "maker" / "python3", VENV_MAKER)
    venv = tmp_path / "gpu-venv"
    env = dict(env, RMBG_VENV=str(venv), PYTHON=str(maker),
               RMBG_TORCH="torch --index-url https://download.pytorch.org/whl/cu124")
    result = run_sh("rmbg", "--version", cwd=work, env=env)
    assert result.returncode == 0, result.stderr
    assert "setting up" in result.stderr and (venv / stamp_name()).is_file()
    assert calls(tmp_path / "log") == [
        ("python", str(REPO), ["-m", "pip", "install", "-q", "torch", "--index-url",
                               "https://download.pytorch.org/whl/cu124"]),
        ("python", str(REPO), ["-m", "pip", "install", "-q", "-e", ".[test,serve,ray]"]),
        ("rmbg", str(work), ["--version"]),
    ]
    (tmp_path / "log").unlink()
    assert run_sh("rmbg", "--version", cwd=work, env=env).returncode == 0
    assert [program for program, _, _ in calls(tmp_path / "log")] == ["rmbg"], "set up once"
