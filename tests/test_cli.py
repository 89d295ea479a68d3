"""The rmbg console script: --version, --help, and clean errors."""

import subprocess
import sys

import pytest

import rmbg_core
from rmbg_core.cli.main import main


@pytest.mark.parametrize("argv,expected", [(["--version"], f"rmbg {rmbg_core.__version__}"),
                                           (["--help"], "usage: rmbg")])
def test_version_and_help(capsys, argv, expected):
    try:
        code = main(argv)
    except SystemExit as exit_:  # argparse exits after printing
        code = exit_.code
    assert code == 0
    assert expected in capsys.readouterr().out


def test_no_command_prints_help_and_exits_2(capsys):
    assert main([]) == 2
    assert "usage: rmbg" in capsys.readouterr().out


def test_module_entry_point_runs():
    result = subprocess.run([sys.executable, "-m", "rmbg_core.cli", "--version"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and result.stdout.startswith("rmbg ")
